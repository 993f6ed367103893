//! The `wgsr` command-line tool.

mod cli;

fn main() {
    quiet_driver_warnings();
    if let Err(e) = cli::run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid or not set"
/// (twice) when the variable is missing, which reads like a wgsr failure.
/// Point it at a private directory of our own before any driver loads.
fn quiet_driver_warnings() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
    let dir = std::env::temp_dir().join(format!("wgsr-runtime-{user}"));
    let private = std::fs::create_dir_all(&dir).is_ok() && {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).is_ok()
        }
        #[cfg(not(unix))]
        true
    };
    if private {
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}
