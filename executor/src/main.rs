use clap::Parser;
fn main() {
    let _ = flow_like_executor::config::ExecutorConfig::parse();
}
