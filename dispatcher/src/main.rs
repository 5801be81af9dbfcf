use clap::Parser;
fn main() {
    let _ = flow_like_dispatcher::config::Cli::parse();
}
