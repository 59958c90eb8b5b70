#!/bin/sh
# Pushes examples/registry/site/ to REGISTRY as demo/site:TAG the way `oras push` does: one
# layer per file, titled by its path (what oci-source writes it back as). Needs curl and
# sha256sum; `oras push REGISTRY/demo/site:TAG index.html config.json css/site.css` from
# site/ does the same.
#
#   examples/registry/push-site.sh 127.0.0.1:5000 1.0.0
set -eu
registry=${1:-127.0.0.1:5000}
tag=${2:-1.0.0}
repo=demo/site
cd "$(dirname "$0")/site"

# Uploads a file as a blob (POST, then PUT with its digest); prints the digest.
blob() {
    digest="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
    location=$(curl -fsS -X POST -D - -o /dev/null "http://$registry/v2/$repo/blobs/uploads/" |
        tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    case $location in http*) ;; *) location="http://$registry$location" ;; esac
    case $location in *\?*) sep='&' ;; *) sep='?' ;; esac
    curl -fsS -X PUT -H 'content-type: application/octet-stream' --data-binary "@$1" \
        "$location${sep}digest=$digest" >/dev/null
    echo "$digest"
}

printf '{}' > /tmp/sluice-empty-config.json
config=$(blob /tmp/sluice-empty-config.json)
layers=""
for file in index.html config.json css/site.css; do
    layer="{\"mediaType\":\"application/octet-stream\",\"digest\":\"$(blob "$file")\",\"size\":$(wc -c < "$file"),\"annotations\":{\"org.opencontainers.image.title\":\"$file\"}}"
    layers="${layers:+$layers,}$layer"
done
manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"$config\",\"size\":2},\"layers\":[$layers]}"
pushed=$(curl -fsS -X PUT -H 'content-type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "$manifest" "http://$registry/v2/$repo/manifests/$tag" -D - -o /dev/null |
    tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
[ -n "$pushed" ] || { echo "push-site.sh: $registry did not take the manifest" >&2; exit 1; }
echo "pushed $repo:$tag as $pushed"
