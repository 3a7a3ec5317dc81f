//! AFL entry point of the `projection` target (see src/targets/projection.rs).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        opencore_fuzz::targets::run("projection", data);
    });
}
