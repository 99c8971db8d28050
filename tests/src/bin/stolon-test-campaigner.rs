//! A test-only process that campaigns for sentinel leadership through `clusterview::store` and
//! holds it, so integration tests can kill the leader's *process* and watch the election hand
//! over. Prints `LEADER <uid>` once elected and `LOST <uid>` (exit 3) if leadership is lost.
//!
//! Usage: stolon-test-campaigner ENDPOINTS CLUSTER UID TTL_SECS
#![forbid(unsafe_code)]

use clusterview::Store;
use std::io::Write;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: stolon-test-campaigner ENDPOINTS CLUSTER UID TTL_SECS");
        std::process::exit(2);
    }
    let ttl = Duration::from_secs(args[4].parse().unwrap_or(2));
    let config = stolon_tests::store_config(&args[1], &args[2]);
    let uid = args[3].clone();
    let store = match Store::connect(&config).await {
        Ok(store) => store,
        Err(err) => {
            eprintln!("connect: {err}");
            std::process::exit(1);
        }
    };
    loop {
        match store.campaign(&uid, ttl).elect().await {
            Ok(leadership) => {
                println!("LEADER {uid}");
                let _ = std::io::stdout().flush();
                leadership.lost().await;
                println!("LOST {uid}");
                let _ = std::io::stdout().flush();
                std::process::exit(3);
            }
            Err(err) => {
                eprintln!("campaign: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
