//! The OpenAPI 3.1 documents: `GET /openapi.json` describes the native API (every route
//! of [`crate::api::router`] but the vendor surfaces), `GET /openapi/{surface}.json` each
//! vendor surface (`cutout`, `picwish`, `picpik`, `kling`) with its own auth, bodies and
//! envelope. Anything else under `/openapi/` is a native 404.
//!
//! Nothing here is written by hand that the code already says: operations come from
//! `#[utoipa::path]` on the handlers themselves, and schemas from `ToSchema` on the types
//! the handlers parse and answer (native views are built from those types, so the document
//! follows them). The vendor surfaces parse and answer loosely typed JSON to stay
//! wire-compatible; their schemas are types written for the document beside each surface's
//! handlers (see [`crate::compat`]), and the suite checks real answers against them
//! (`tests/openapi.rs`). This module owns the document-level parts: info, tags, security
//! schemes, the multipart form of a JSON request and the binary file schema.

use super::{files, native, playground};
use crate::compat::{cutout, kling, picpik, picwish};
use crate::error::ApiError;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::sync::OnceLock;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

/// The native API's OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Backdrop",
        description = "Background generation, image expansion and cut-outs as asynchronous \
            tasks: submit, then poll `GET /v1/tasks/{id}` (or follow its events) until the task \
            has ended, and download the results from their signed URLs. Errors are always \
            `{\"code\", \"message\"}` (the `ErrorBody` schema) with the HTTP status of their \
            class. Timestamps are milliseconds since the Unix epoch. A task with a \
            `callback_url` gets a POST on every state change, signed with \
            `Backdrop-Signature: t=UNIX,v1=HEX`. The vendor surfaces have their own documents \
            at `/openapi/{surface}.json`."
    ),
    paths(
        native::submit_background,
        native::submit_expansion,
        native::submit_cutout,
        native::list_tasks,
        native::get_task,
        native::cancel_task,
        native::task_events,
        native::task_callbacks,
        native::scenes,
        native::scene_thumbnail,
        native::models,
        native::account,
        files::serve,
        super::healthz,
        super::readyz,
        super::metrics,
        document,
        surface_document,
        playground::page,
        playground::asset,
    ),
    components(schemas(
        native::BackgroundRequest,
        native::BackgroundForm,
        native::ExpansionRequest,
        native::ExpansionForm,
        native::CutoutRequest,
        native::CutoutForm,
        native::LoraWeight,
        native::Accepted,
        native::ErrorBody,
        native::TaskView,
        native::ProgressView,
        native::ImageView,
        native::TaskPage,
        native::CallbackLog,
        native::DeliveryView,
        native::SceneList,
        native::SceneView,
        native::ModelList,
        native::ModelInfo,
        native::AccountView,
        native::KeyView,
        native::LedgerView,
        super::Health,
        super::Readiness,
        super::NotReady,
        Surface,
    )),
    modifiers(&NativeSecurity),
    tags(
        (name = "tasks", description = "Submit, follow, list and cancel tasks."),
        (name = "catalog", description = "Scene templates, engines and models."),
        (name = "account", description = "The key's balance and ledger."),
        (name = "files", description = "Results at signed URLs."),
        (name = "service", description = "Health, readiness, metrics and these documents."),
        (name = "playground", description = "The browser page."),
    )
)]
pub struct ApiDoc;

/// The native API's two ways of sending a key: `bearer` and `api_key`.
struct NativeSecurity;

impl Modify for NativeSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        add_security_scheme(
            openapi,
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer KEY` with a Backdrop API key."))
                    .build(),
            ),
        );
        add_security_scheme(
            openapi,
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The same key in the `X-API-Key` header.",
            ))),
        );
    }
}

/// A vendor surface with a document of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Surface {
    /// Cutout.pro Background Diffusion.
    Cutout,
    /// PicWish Generate Background.
    Picwish,
    /// PicPik GenerateBackgrounds.
    Picpik,
    /// Kling Image Expansion.
    Kling,
}

impl Surface {
    /// Every surface.
    pub const ALL: [Surface; 4] =
        [Surface::Cutout, Surface::Picwish, Surface::Picpik, Surface::Kling];

    /// The name in `/openapi/{surface}.json`.
    pub fn name(self) -> &'static str {
        match self {
            Surface::Cutout => "cutout",
            Surface::Picwish => "picwish",
            Surface::Picpik => "picpik",
            Surface::Kling => "kling",
        }
    }

    /// The surface's document.
    pub fn document(self) -> utoipa::openapi::OpenApi {
        match self {
            Surface::Cutout => cutout::Document::openapi(),
            Surface::Picwish => picwish::Document::openapi(),
            Surface::Picpik => picpik::Document::openapi(),
            Surface::Kling => kling::Document::openapi(),
        }
    }
}

/// A document as JSON, rendered once per process: the documents depend only on the binary.
fn rendered(
    cell: &'static OnceLock<Bytes>,
    build: impl FnOnce() -> utoipa::openapi::OpenApi,
) -> Response {
    let body = cell.get_or_init(|| match serde_json::to_vec(&build()) {
        Ok(json) => Bytes::from(json),
        // The document is plain data; serialising it cannot fail.
        Err(_) => Bytes::new(),
    });
    ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi_document",
    responses((status = 200, description = "The native API's OpenAPI 3.1 document.", body = Object)),
    tag = "service"
)]
pub async fn document() -> Response {
    static NATIVE: OnceLock<Bytes> = OnceLock::new();
    rendered(&NATIVE, ApiDoc::openapi)
}

/// A vendor surface's document.
#[utoipa::path(get, path = "/openapi/{surface}.json", operation_id = "surface_openapi_document",
    params(("surface" = Surface, Path, description = "The vendor surface.")),
    responses(
        (status = 200, description = "The surface's OpenAPI 3.1 document.", body = Object),
        (status = 404, description = "No such surface.", body = native::ErrorBody),
    ),
    tag = "service"
)]
pub async fn surface_document(Path(file): Path<String>) -> Response {
    static DOCUMENTS: [OnceLock<Bytes>; 4] = [const { OnceLock::new() }; 4];
    let found = file
        .strip_suffix(".json")
        .and_then(|name| Surface::ALL.iter().position(|s| s.name() == name));
    match found {
        Some(index) => rendered(&DOCUMENTS[index], || Surface::ALL[index].document()),
        None => ApiError::not_found(format!(
            "no document '{file}'; there are {}",
            Surface::ALL.map(|s| format!("{}.json", s.name())).join(", ")
        ))
        .into_response(),
    }
}

/// Bytes of a file: a part of a multipart form, or a binary answer.
pub struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}

/// The multipart form of the JSON request `T`: `T`'s fields as text parts (what is not a
/// string as its JSON text), plus the file parts `files` (name, description). Built from
/// `T`'s own schema, so the form cannot leave the JSON request behind.
pub fn multipart_form<T: PartialSchema>(
    description: &str,
    files: &[(&str, &str)],
) -> RefOr<Schema> {
    let mut schema = T::schema();
    if let RefOr::T(Schema::Object(object)) = &mut schema {
        object.description = Some(description.to_string());
        for (name, description) in files {
            let part = ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
                .description(Some(*description));
            object.properties.insert(name.to_string(), part.into());
        }
    }
    schema
}

/// `null`: the schema of an envelope's `data` on failure.
pub fn null_schema() -> Schema {
    ObjectBuilder::new().schema_type(Type::Null).into()
}

/// Any JSON value: the schema of a field a surface echoes as it was sent.
pub fn any_schema() -> Schema {
    ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::AnyValue).into()
}

/// Adds the security scheme `name` to a document.
pub fn add_security_scheme(
    openapi: &mut utoipa::openapi::OpenApi,
    name: &str,
    scheme: SecurityScheme,
) {
    openapi.components.get_or_insert_with(Default::default).add_security_scheme(name, scheme);
}
