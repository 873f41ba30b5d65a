//! The module's own check of the Envoy it was loaded into, at `program_init`: every Envoy
//! callback it calls must be exported by that Envoy. Envoy itself compares only the ABI version
//! string and loads a module of another version with a warning, so without this check a
//! missing callback would surface as a crash at its first call. With it the module refuses to
//! initialise (returns null), and Envoy refuses every configuration that names it: fail closed.

use std::ffi::CStr;

/// Every callback the module calls (a unit test keeps this in step with the code).
pub const REQUIRED: [&CStr; 29] = [
    c"envoy_dynamic_module_callback_log",
    c"envoy_dynamic_module_callback_log_enabled",
    c"envoy_dynamic_module_callback_http_clear_route_cache",
    c"envoy_dynamic_module_callback_http_filter_config_define_counter",
    c"envoy_dynamic_module_callback_http_filter_config_define_gauge",
    c"envoy_dynamic_module_callback_http_filter_config_increment_counter",
    c"envoy_dynamic_module_callback_http_filter_config_scheduler_commit",
    c"envoy_dynamic_module_callback_http_filter_config_scheduler_delete",
    c"envoy_dynamic_module_callback_http_filter_config_scheduler_new",
    c"envoy_dynamic_module_callback_http_filter_config_set_gauge",
    c"envoy_dynamic_module_callback_http_filter_get_attribute_bool",
    c"envoy_dynamic_module_callback_http_filter_get_attribute_int",
    c"envoy_dynamic_module_callback_http_filter_get_attribute_string",
    c"envoy_dynamic_module_callback_http_get_header",
    c"envoy_dynamic_module_callback_http_send_response",
    c"envoy_dynamic_module_callback_http_set_filter_state_bytes",
    c"envoy_dynamic_module_callback_http_set_header",
    c"envoy_dynamic_module_callback_network_filter_close_with_details",
    c"envoy_dynamic_module_callback_network_filter_config_define_counter",
    c"envoy_dynamic_module_callback_network_filter_config_increment_counter",
    c"envoy_dynamic_module_callback_network_filter_config_scheduler_commit",
    c"envoy_dynamic_module_callback_network_filter_config_scheduler_delete",
    c"envoy_dynamic_module_callback_network_filter_config_scheduler_new",
    c"envoy_dynamic_module_callback_network_filter_continue_reading",
    c"envoy_dynamic_module_callback_network_filter_get_attribute_bool",
    c"envoy_dynamic_module_callback_network_filter_get_attribute_int",
    c"envoy_dynamic_module_callback_network_filter_get_attribute_string",
    c"envoy_dynamic_module_callback_network_filter_is_ssl",
    c"envoy_dynamic_module_callback_network_set_filter_state_bytes",
];

/// The required callbacks this process does not export.
pub fn missing() -> Vec<&'static CStr> {
    REQUIRED
        .into_iter()
        .filter(|name| {
            // SAFETY: a NUL-terminated name; RTLD_DEFAULT searches the process's global symbols,
            // where the Envoy executable's exports are.
            unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()).is_null() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The callbacks the sources call (`abi::envoy_dynamic_module_callback_*`), outside `abi.rs`.
    fn called() -> BTreeSet<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut names = BTreeSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name == "abi.rs" || name == "abi_check.rs" || !name.ends_with(".rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, _) in text.match_indices("abi::envoy_dynamic_module_callback_") {
                let rest = &text[i + "abi::".len()..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                names.insert(rest[..end].to_string());
            }
        }
        names
    }

    #[test]
    fn required_lists_exactly_the_callbacks_called() {
        let required: BTreeSet<String> = REQUIRED
            .iter()
            .map(|c| c.to_string_lossy().to_string())
            .collect();
        assert_eq!(required, called());
    }

    #[test]
    fn outside_envoy_every_callback_is_missing() {
        assert_eq!(missing().len(), REQUIRED.len());
    }
}
