//! AFL entry point of the `aggregate` target (see src/targets/aggregate.rs).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        opencore_fuzz::targets::run("aggregate", data);
    });
}
