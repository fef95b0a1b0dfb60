//! The streampod example server: chat rooms and notifications.
//!
//! Until the streaming runtime lands, this binary lists the models generated from
//! `models/*.yaml`, which shows the build.rs code generation working end to end.

streampod::include_models!();

fn main() {
    use streampod::ModelSet as _;
    println!("streampod example-server models:");
    for class_name in Protocol::class_names() {
        println!("  {class_name}");
    }
}
