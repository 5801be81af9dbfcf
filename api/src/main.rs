use clap::Parser;
fn main() {
    let _ = flow_like_api::config::Cli::parse();
}
