//! AFL entry point of the `update_apply` target (see src/targets/update_apply.rs).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        opencore_fuzz::targets::run("update_apply", data);
    });
}
