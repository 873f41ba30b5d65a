//! Prints the README's architecture picture (`docs/architecture.svg`):
//! `cargo run -p alp-e2e --bin architecture-svg > docs/architecture.svg`.

fn main() {
    print!("{}", alp_e2e::architecture::picture());
}
