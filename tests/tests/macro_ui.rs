//! Compile-time checks of `#[endpoint]`: supported shapes compile; every bad signature is
//! an error at the offending token (expected output in `tests/ui/fail/*.stderr`, written
//! by the pinned toolchain; refresh with `TRYBUILD=overwrite`).

#[test]
fn endpoint_macro() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/fail/*.rs");
}
