//! The `shardkv` binary.

fn main() {
    println!("shardkv {}", env!("CARGO_PKG_VERSION"));
    println!("The Raft core and its simulation are built; the server arrives with the node runtime.");
    println!("Run the tests with: cargo test --release");
}
