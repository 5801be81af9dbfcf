//! The OpenAPI document, generated from the handlers' annotations and served at `/openapi.json`.

use crate::routes::{admin, dead_letters, execution_events, execution_ops, executions, health, queue, workflows};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "flow-like API", description = "Submit and follow workflow executions. Errors are RFC 9457 problem+json."),
    paths(
        executions::submit,
        executions::get,
        executions::list,
        execution_events::events,
        execution_ops::result,
        execution_ops::cancel,
        workflows::put,
        workflows::get_latest,
        workflows::get_version,
        queue::get,
        admin::create_key,
        admin::revoke_key,
        admin::put_limits,
        dead_letters::list,
        dead_letters::redrive,
        health::healthz,
        health::readyz,
        health::metrics,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
