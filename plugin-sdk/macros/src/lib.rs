//! Export macros of the Sluice plugin SDK. Use them through `sluice_plugin_sdk`, not directly.
//!
//! Each macro generates the bindings of one plugin world *in the plugin's own crate*, so that a
//! component exports exactly the worlds its author exported, whatever the linker keeps. Shared
//! types and the `log` import come from the SDK through wit-bindgen's `with`. The world each
//! macro generates imports only `log`: Rust's standard library reaches the WASI interfaces of
//! `wit/worlds.wit`'s `host` world on its own.

use proc_macro::TokenStream;

/// The WIT package's interfaces, embedded at compile time: `wit/` stays the single source of truth.
const TYPES_WIT: &str = include_str!("../../../wit/types.wit");

/// Exports a type implementing `sluice_plugin_sdk::Task` as the component's `task` world.
#[proc_macro]
pub fn export_task(input: TokenStream) -> TokenStream {
    let ty = plugin_type(&input);
    export(
        "task",
        &format!(
            "impl wit::Guest for Export {{
                fn run(input: wit::TaskInput) -> ::core::result::Result<wit::Report, ::sluice_plugin_sdk::Error> {{
                    let report = ::sluice_plugin_sdk::__private::run_task::<{ty}>(input.config, input.context, input.variables)?;
                    ::core::result::Result::Ok(wit::Report {{
                        warnings: report.warnings,
                        outputs: report.outputs.into_iter().map(|o| wit::OutputVariable {{
                            name: o.name, value: o.value, secret: o.secret,
                        }}).collect(),
                    }})
                }}
            }}"
        ),
    )
}

/// Exports a type implementing `sluice_plugin_sdk::Gate` as the component's `gate` world.
#[proc_macro]
pub fn export_gate(input: TokenStream) -> TokenStream {
    let ty = plugin_type(&input);
    export(
        "gate",
        &format!(
            "impl wit::Guest for Export {{
                fn evaluate(
                    config: ::std::string::String,
                    context: ::sluice_plugin_sdk::Context,
                    variables: ::std::vec::Vec<::sluice_plugin_sdk::Variable>,
                ) -> ::core::result::Result<wit::Health, ::sluice_plugin_sdk::Error> {{
                    match ::sluice_plugin_sdk::__private::evaluate_gate::<{ty}>(config, context, variables)? {{
                        ::sluice_plugin_sdk::Health::Healthy => ::core::result::Result::Ok(wit::Health::Healthy),
                        ::sluice_plugin_sdk::Health::Unhealthy(why) => ::core::result::Result::Ok(wit::Health::Unhealthy(why)),
                    }}
                }}
            }}"
        ),
    )
}

/// Exports a type implementing `sluice_plugin_sdk::ArtifactSource` as the component's
/// `artifact-source` world.
#[proc_macro]
pub fn export_artifact_source(input: TokenStream) -> TokenStream {
    let ty = plugin_type(&input);
    export(
        "artifact-source",
        &format!(
            "impl wit::Guest for Export {{
                fn list_versions(config: ::std::string::String)
                    -> ::core::result::Result<::std::vec::Vec<::sluice_plugin_sdk::Version>, ::sluice_plugin_sdk::Error> {{
                    ::sluice_plugin_sdk::__private::list_versions::<{ty}>(config)
                }}
                fn fetch(config: ::std::string::String, version: ::std::string::String, destination: ::std::string::String)
                    -> ::core::result::Result<::sluice_plugin_sdk::Version, ::sluice_plugin_sdk::Error> {{
                    ::sluice_plugin_sdk::__private::fetch::<{ty}>(config, &version, &destination)
                }}
            }}"
        ),
    )
}

/// The plugin type as a path usable from inside the generated module (one level down).
fn plugin_type(input: &TokenStream) -> String {
    let ty = input.to_string().replace(' ', "");
    if ty.starts_with("crate::") || ty.starts_with("::") {
        ty
    } else {
        format!("super::{ty}")
    }
}

/// Generates the bindings of a world exporting `interface` in a private module and implements
/// that export with `body`.
fn export(interface: &str, body: &str) -> TokenStream {
    let world = format!("{interface}-export");
    let wit =
        format!("{TYPES_WIT}\nworld {world} {{\n    import log;\n    export {interface};\n}}\n");
    let module = interface.replace('-', "_");
    format!(
        "#[doc(hidden)]
        #[allow(unsafe_code, missing_docs, unused_qualifications, clippy::all)]
        mod __sluice_export_{module} {{
            ::sluice_plugin_sdk::__private::wit_bindgen::generate!({{
                inline: {wit:?},
                world: {world:?},
                runtime_path: \"::sluice_plugin_sdk::__private::wit_bindgen::rt\",
                with: {{
                    \"sluice:plugin/types@0.1.0\": ::sluice_plugin_sdk::__private::types,
                    \"sluice:plugin/log@0.1.0\": ::sluice_plugin_sdk::__private::log,
                }},
            }});
            use exports::sluice::plugin::{module} as wit;
            struct Export;
            {body}
            export!(Export);
        }}"
    )
    .parse()
    .expect("the generated export module is valid Rust")
}
