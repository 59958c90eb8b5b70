//! The registry client's rules: plain HTTP only to loopback addresses, where the registry may
//! send the client, and whom its credentials go to.

use super::*;

#[test]
fn only_loopback_addresses_get_plain_http() {
    for plain in [
        "127.0.0.1:5000",
        "127.1.2.3",
        "localhost:5000",
        "[::1]:5000",
    ] {
        assert!(loopback(plain), "{plain}");
        let client = Client::new(plain, Credentials::Anonymous);
        assert!(client.base().starts_with("http://"), "{plain}");
    }
    for tls in [
        "127.0.0.1.evil.example",
        "127.evil.example:80",
        "registry.example",
        "10.0.0.1:5000",
    ] {
        assert!(!loopback(tls), "{tls}");
        let client = Client::new(tls, Credentials::Anonymous);
        assert!(client.base().starts_with("https://"), "{tls}");
    }
}

#[test]
fn the_registry_sends_the_client_to_https_or_loopback_only() {
    let client = Client::new("registry.example", Credentials::Anonymous);
    assert_eq!(
        client.followable("/v2/x/blobs/y").unwrap(),
        "https://registry.example/v2/x/blobs/y"
    );
    assert!(client.followable("https://cdn.example/b?sig=1").is_ok());
    assert!(client.followable("http://127.0.0.1:9000/b").is_ok());
    for refused in [
        "http://cdn.example/b",
        "http://127.0.0.1.evil.example/b",
        "file:///etc/passwd",
        "ftp://x/y",
    ] {
        let e = client.followable(refused).unwrap_err();
        assert!(
            e.contains("only HTTPS (or loopback) is followed"),
            "{refused}: {e}"
        );
    }
}

#[test]
fn credentials_are_for_the_registrys_own_origin_only() {
    let client = Client::new("registry.example", Credentials::Anonymous);
    assert!(client.own("https://registry.example/v2/x/blobs/uploads/1"));
    for other in [
        "https://registry.example.evil/v2/x",
        "https://registry.example:444/v2/x",
        "https://cdn.example/registry.example/v2/x",
        "http://registry.example/v2/x",
    ] {
        assert!(!client.own(other), "{other}");
    }
}

#[tokio::test]
async fn a_token_service_over_plain_http_elsewhere_is_never_sent_the_credentials() {
    let client = Client::new(
        "registry.example",
        Credentials::Basic {
            username: "ci".into(),
            password: "s3cret".into(),
        },
    );
    let challenge = Reply {
        status: 401,
        headers: vec![(
            "www-authenticate".into(),
            "Bearer realm=\"http://evil.example/token\",service=\"registry\"".into(),
        )],
        body: Vec::new(),
    };
    // Refused before any request is made (there is no server to make it to).
    let e = client.answer_challenge(&challenge).await.unwrap_err();
    assert!(e.contains("only HTTPS (or loopback) is followed"), "{e}");
}
