//! `workflows put NAME FILE` (`PUT /workflows/{name}`: a new version) and `workflows get NAME [--version N]`.

use crate::args::Workflows;
use crate::client::segment;
use crate::commands::executions::pairs;
use crate::error::CliError;
use crate::inputs;
use crate::render;
use crate::{Context, Finish};
use reqwest::Method;

pub async fn run(context: &Context, command: Workflows) -> Result<Finish, CliError> {
    let view = match command {
        Workflows::Put { name, file } => {
            let document = inputs::read_workflow(&file)?;
            let path = format!("/api/v1/workflows/{}", segment(&name));
            let view = context.client.call(Method::PUT, &path, Some(&document), &[]).await?;
            if !context.json() {
                let line =
                    format!("registered {} version {}", render::text(&view["name"]), render::text(&view["version"]));
                context.line(line)?;
                return Ok(Finish::Success);
            }
            view
        }
        Workflows::Get { name, version } => {
            let path = match version {
                Some(version) => format!("/api/v1/workflows/{}/versions/{version}", segment(&name)),
                None => format!("/api/v1/workflows/{}", segment(&name)),
            };
            context.client.get(&path, &[]).await?
        }
    };
    if context.json() {
        context.document(&view)?;
        return Ok(Finish::Success);
    }
    let mut rows = vec![
        ("name", render::text(&view["name"])),
        ("version", render::text(&view["version"])),
        ("registered", render::ago(&view["created_at"])),
    ];
    if let Some(versions) = view["versions"].as_array() {
        rows.push(("versions", versions.iter().map(render::text).collect::<Vec<_>>().join(", ")));
    }
    let mut lines = pairs(context.palette, &rows);
    lines.push(String::new());
    lines.extend(serde_json::to_string_pretty(&view["document"]).unwrap_or_default().lines().map(str::to_owned));
    context.lines(lines)?;
    Ok(Finish::Success)
}
