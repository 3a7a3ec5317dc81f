//! AFL entry point of the `json_bson` target (see src/targets/json_bson.rs).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        opencore_fuzz::targets::run("json_bson", data);
    });
}
