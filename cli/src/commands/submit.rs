//! `submit`: builds the body of `POST /api/v1/executions` (an inline workflow from a file, or a registered one
//! by `--ref`), prints the new execution's id, and with `--watch` follows it.

use crate::args::Submit;
use crate::error::CliError;
use crate::inputs;
use crate::{Context, Finish};
use reqwest::Method;
use serde_json::{Map, Value};

/// The request body the flags describe (files are read here, so a bad one fails before anything is sent).
pub fn body(submit: &Submit) -> Result<Value, CliError> {
    let mut body = Map::new();
    match (&submit.file, &submit.reference) {
        (_, Some(reference)) => {
            body.insert("workflow_ref".into(), reference.to_json());
        }
        (Some(file), None) => {
            body.insert("workflow".into(), inputs::read_workflow(file)?);
        }
        (None, None) => return Err(CliError::Usage("give a workflow file or --ref NAME[@VERSION]".into())),
    }
    if let Some(input) = &submit.input {
        body.insert("input".into(), inputs::read_json(input)?);
    }
    if let Some(priority) = submit.priority {
        body.insert("priority".into(), priority.into());
    }
    if !submit.labels.is_empty() {
        body.insert("labels".into(), Value::Object(inputs::labels_object(&submit.labels)));
    }
    Ok(Value::Object(body))
}

pub async fn run(context: &Context, submit: Submit) -> Result<Finish, CliError> {
    let body = body(&submit)?;
    let headers: Vec<(&str, String)> =
        submit.idempotency_key.iter().map(|key| ("idempotency-key", key.clone())).collect();
    let accepted = context.client.call(Method::POST, "/api/v1/executions", Some(&body), &headers).await?;
    let id = accepted["id"]
        .as_str()
        .ok_or_else(|| CliError::UnexpectedAnswer { what: "POST /api/v1/executions".into(), cause: "no id".into() })?
        .to_owned();
    if context.json() {
        context.document(&accepted)?;
    } else {
        context.line(&id)?;
    }
    if submit.watch {
        return crate::watch::run(context, &id).await;
    }
    Ok(Finish::Success)
}
