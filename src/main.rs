//! The `shardkv` binary: the server, the local cluster and the operator commands.

use std::process::ExitCode;

const USAGE: &str = "usage: shardkv <local|server|status|admin> [options]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("local") => {
            println!("shardkv {}: local cluster", env!("CARGO_PKG_VERSION"));
            println!("plan: three `shardkv server` processes on 127.0.0.1,");
            println!("      RESP ports 7001-7003, peer ports 7101-7103, metrics 9101-9103,");
            println!("      layout shards/local-3x8.toml, data under ./data/local.");
            println!("The node runtime that serves this is not built yet; the Raft core,");
            println!("its simulation and the storage are. Run the tests: cargo test --release");
            ExitCode::SUCCESS
        }
        Some("--version") | Some("-V") => {
            println!("shardkv {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("shardkv: '{other}' is not available yet\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
