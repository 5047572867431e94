//! Build script: binds the module to the exact Kamailio build it will be loaded into.
//!
//! 1. Finds a Kamailio source tree: `$KAMAILIO_SRC`, or the one `kamailio-headers/fetch-sources.sh`
//!    fetched into `kamailio-headers/src/` (the Debian source package of the installed binary).
//! 2. Asks that tree's own build system for the `-D` set Kamailio was compiled with
//!    (`make printcdefs` plus `CC_PMUTEX_OPTS`, Kamailio's Makefile.defs), adding `-DMOD_NAME="push"`.
//! 3. Compiles and runs `kamailio-headers/version.c`, which prints the headers' own `SER_FULL_VERSION`
//!    and `SER_COMPILE_FLAGS`: these become `module_version` / `module_flags`.
//! 4. Compares them with `kamailio -v` of the installed binary and stops on a mismatch.
//! 5. Runs bindgen (allowlisted) on `kamailio-headers/wrapper.h` and compiles `kamailio-headers/shim.c`,
//!    both with the same flags.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kamailio-headers/wrapper.h");
    println!("cargo:rerun-if-changed=kamailio-headers/shim.c");
    println!("cargo:rerun-if-changed=kamailio-headers/version.c");
    println!("cargo:rerun-if-env-changed=KAMAILIO_SRC");
    println!("cargo:rerun-if-env-changed=KAMAILIO_BIN");

    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let tree = find_source_tree(&manifest);
    let src = tree.join("src");
    println!(
        "cargo:rerun-if-changed={}",
        src.join("core/ver_defs.h").display()
    );

    let mut defines = make_defines(&src);
    defines.push("-DMOD_NAME=\"push\"".to_string());
    let include = format!("-I{}", src.display());

    let (version, flags) = header_version(&manifest, &out, &src, &defines);
    check_installed_binary(&version, &flags);
    std::fs::write(
        out.join("version.rs"),
        format!(
            "/// `SER_FULL_VERSION` of the headers built against.\n\
             pub const MODULE_VERSION: &[u8] = b\"{}\\0\";\n\
             /// `SER_COMPILE_FLAGS` of the headers built against.\n\
             pub const MODULE_FLAGS: &[u8] = b\"{}\\0\";\n",
            escape(&version),
            escape(&flags)
        ),
    )
    .unwrap();

    let mut bindings = bindgen::Builder::default()
        .header(
            manifest
                .join("kamailio-headers/wrapper.h")
                .to_string_lossy(),
        )
        .clang_arg(&include)
        .clang_args(&defines)
        .use_core()
        .layout_tests(false)
        .derive_default(true)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for item in ALLOW_TYPES {
        bindings = bindings.allowlist_type(item);
    }
    for item in ALLOW_FUNCTIONS {
        bindings = bindings.allowlist_function(item);
    }
    for item in ALLOW_VARS {
        bindings = bindings.allowlist_var(item);
    }
    bindings
        .generate()
        .unwrap_or_else(|e| {
            fail(&format!(
                "bindgen failed on kamailio-headers/wrapper.h: {e}"
            ))
        })
        .write_to_file(out.join("bindings.rs"))
        .unwrap();

    let mut shim = cc::Build::new();
    shim.file(manifest.join("kamailio-headers/shim.c"))
        .include(&src)
        .warnings(false)
        // A Kamailio whose C API differs from the one the shim was written against (a function
        // gone, a parameter of another type) must stop the build here rather than load a module
        // that calls it wrongly: these are errors, whatever the compiler's defaults.
        .flag("-Werror=implicit-function-declaration")
        .flag("-Werror=incompatible-pointer-types")
        .flag("-Werror=int-conversion")
        .flag("-Werror=return-type");
    for d in &defines {
        shim.flag(d);
    }
    shim.compile("kamailio_push_shim");
}

/// Kamailio types the module uses; bindgen pulls in what they depend on.
const ALLOW_TYPES: &[&str] = &[
    "module_exports",
    "cmd_export_t",
    "param_export_t",
    "rpc_export_t",
    "rpc_t",
    "modparam_t",
    "sip_msg",
    "push_.*",
    "stat_export_t",
];
const ALLOW_FUNCTIONS: &[&str] = &[
    "register_procs",
    "fork_process",
    "cfg_register_child",
    "cfg_child_init",
    "push_shim_.*",
    "fixup_spve_null",
    "register_module_stats",
    "fixup_free_spve_null",
];
const ALLOW_VARS: &[&str] = &[
    "PROC_.*",
    "PARAM_.*",
    "USE_FUNC_PARAM",
    "L_ALERT",
    "L_BUG",
    "L_CRIT",
    "L_ERR",
    "L_WARN",
    "L_NOTICE",
    "L_INFO",
    "L_DBG",
    "REQUEST_ROUTE",
    "FAILURE_ROUTE",
    "ONREPLY_ROUTE",
    "BRANCH_ROUTE",
    "ANY_ROUTE",
    "PUSH_.*",
    "STAT_IS_FUNC",
    "STAT_NO_RESET",
];

fn fail(msg: &str) -> ! {
    eprintln!("\nkamailio-push build: {msg}\n");
    panic!("{msg}");
}

fn find_source_tree(manifest: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("KAMAILIO_SRC") {
        let dir = PathBuf::from(dir);
        if !dir.join("src/core/sr_module.h").is_file() {
            fail(&format!(
                "KAMAILIO_SRC={} is not a Kamailio source tree (no src/core/sr_module.h)",
                dir.display()
            ));
        }
        return dir;
    }
    let fetched = manifest.join("kamailio-headers/src");
    let found = std::fs::read_dir(&fetched).ok().and_then(|entries| {
        entries
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("src/core/sr_module.h").is_file())
    });
    match found {
        Some(tree) => tree,
        None => fail(
            "no Kamailio source tree found. Run `kamailio-headers/fetch-sources.sh` (it fetches the Debian \
             source package of the installed kamailio; scripts/setup.sh does everything), or point \
             KAMAILIO_SRC at the source tree of the Kamailio you run",
        ),
    }
}

/// The `-D` set the Kamailio binary was built with, one define per element, quotes kept.
fn make_defines(src: &Path) -> Vec<String> {
    let run = |args: &[&str]| -> String {
        let out = Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(src)
            .args(args)
            .output()
            .unwrap_or_else(|e| fail(&format!("cannot run make in {}: {e}", src.display())));
        if !out.status.success() {
            fail(&format!(
                "`make {}` failed in {}: {}",
                args.join(" "),
                src.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cdefs = run(&["printcdefs"]);
    let start = cdefs
        .find("-D")
        .unwrap_or_else(|| fail(&format!("`make printcdefs` printed no -D flags: {cdefs}")));
    let mut defines: Vec<String> = split_flags(&cdefs[start..])
        .into_iter()
        .filter(|f| f.starts_with("-D"))
        .collect();
    // KSR_PTHREAD_MUTEX_SHARED sits in CFLAGS, not C_DEFS, but is part of SER_COMPILE_FLAGS.
    let pmutex = run(&["printvar", "v=CC_PMUTEX_OPTS"]);
    defines.extend(
        split_flags(&pmutex)
            .into_iter()
            .filter(|f| f.starts_with("-D")),
    );
    defines
}

/// Splits a flags line on blanks outside double quotes, keeping the quotes (`-DCOMPILER="gcc 12.2.0"`).
fn split_flags(line: &str) -> Vec<String> {
    let mut flags = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    flags.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        flags.push(cur);
    }
    flags
}

/// Compiles and runs version.c to read SER_FULL_VERSION and SER_COMPILE_FLAGS from the headers.
fn header_version(manifest: &Path, out: &Path, src: &Path, defines: &[String]) -> (String, String) {
    let compiler = cc::Build::new().get_compiler();
    let exe = out.join("kamailio-version");
    let mut cmd = compiler.to_command();
    cmd.arg(format!("-I{}", src.display()))
        .args(defines)
        .arg(manifest.join("kamailio-headers/version.c"))
        .arg("-o")
        .arg(&exe);
    let status = cmd
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run the C compiler: {e}")));
    if !status.success() {
        fail("compiling kamailio-headers/version.c failed");
    }
    let printed = Command::new(&exe).output().unwrap();
    let text = String::from_utf8(printed.stdout).unwrap();
    let mut lines = text.lines();
    let version = lines.next().unwrap_or_default().to_string();
    let flags = lines.next().unwrap_or_default().to_string();
    if version.is_empty() || flags.is_empty() {
        fail("kamailio-headers/version.c printed no version");
    }
    (version, flags)
}

/// Stops the build when the installed kamailio binary was built from other headers or flags.
fn check_installed_binary(version: &str, flags: &str) {
    let bin = env::var("KAMAILIO_BIN").unwrap_or_else(|_| "kamailio".to_string());
    let out = match Command::new(&bin).arg("-v").output() {
        Ok(out) => out,
        Err(_) => {
            println!(
                "cargo:warning=no `{bin}` binary found: cannot check that the headers match the Kamailio \
                 this module will be loaded into"
            );
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let installed_version = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("version: ")
                .or_else(|| l.strip_prefix("Version: "))
        })
        .map(str::trim)
        .unwrap_or("");
    let installed_flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags: "))
        .map(str::trim)
        .unwrap_or("");
    // `kamailio -v` prints `full_version`: SER_FULL_VERSION, then the repository revision the tree
    // was cut from (empty in 5.6's Debian tree, `fce50d` in 6.0.1's). Kamailio's loader compares
    // SER_FULL_VERSION only, so the revision is not part of the match.
    let version = version.trim();
    let same_version = installed_version == version
        || installed_version
            .strip_prefix(version)
            .is_some_and(|rest| rest.starts_with(' '));
    if !same_version || loader_flags(installed_flags) != loader_flags(flags) {
        fail(&format!(
            "the Kamailio headers do not match the installed `{bin}`:\n  headers:   {version}\n             {flags}\n  \
             installed: {installed_version}\n             {installed_flags}\n\
             Run `kamailio-headers/fetch-sources.sh` to fetch the sources of the installed package, or point \
             KAMAILIO_SRC at the source tree that `{bin}` was built from (KAMAILIO_BIN names another binary)."
        ));
    }
}

/// The compile flags as Kamailio's loader compares them. From 6.1 on `kamailio -v` prints the flags
/// as seen in core/ver.c, which includes the memory managers' headers first: they define
/// DBG_QM_MALLOC, DBG_F_MALLOC and DBG_TLSF_MALLOC when DBG_SR_MEMORY is set. The loader
/// (sr_module.c) and every module (sr_module.h's MODULE_VERSION) see SER_COMPILE_FLAGS without
/// them, so they are left out of the comparison; DBG_SR_MEMORY itself stays in.
fn loader_flags(flags: &str) -> Vec<&str> {
    flags
        .split(',')
        .map(str::trim)
        .filter(|f| !matches!(*f, "DBG_QM_MALLOC" | "DBG_F_MALLOC" | "DBG_TLSF_MALLOC"))
        .collect()
}

fn escape(s: &str) -> String {
    s.chars().flat_map(char::escape_default).collect()
}
