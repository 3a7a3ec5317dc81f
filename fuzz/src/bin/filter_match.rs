//! AFL entry point of the `filter_match` target (see src/targets/filter_match.rs).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        opencore_fuzz::targets::run("filter_match", data);
    });
}
