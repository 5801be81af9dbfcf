//! The commands, one module per resource, and the dispatch from the parsed command line to them.

pub mod cancel;
pub mod dead_letters;
pub mod executions;
pub mod logs;
pub mod queue;
pub mod submit;
pub mod tenants;
pub mod workflows;

use crate::args::Command;
use crate::error::CliError;
use crate::{Context, Finish};

pub async fn run(context: &Context, command: Command) -> Result<Finish, CliError> {
    match command {
        Command::Submit(submit) => submit::run(context, submit).await,
        Command::Watch(execution) => crate::watch::run(context, &execution.id).await,
        Command::Get(execution) => executions::get(context, &execution.id).await,
        Command::List(list) => executions::list(context, list).await,
        Command::Result(execution) => executions::result(context, &execution.id).await,
        Command::Logs(logs) => logs::run(context, logs).await,
        Command::Why(execution) => executions::why(context, &execution.id).await,
        Command::Cancel(cancel) => cancel::run(context, cancel).await,
        Command::Queue(queue) => queue::run(context, queue).await,
        Command::DeadLetters(command) => dead_letters::run(context, command).await,
        Command::Workflows(command) => workflows::run(context, command).await,
        Command::Tenants(command) => tenants::run(context, command).await,
    }
}
