//! `GET /static/{file}`: the CSS, JavaScript and icons of `static/`, embedded in the binary
//! so a single executable serves the whole UI.

use actix_web::{HttpResponse, web};

/// (name, content type, bytes) of every file under `static/`.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../static/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../static/app.js"),
    ),
    (
        "theme.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../static/theme.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../../static/favicon.svg"),
    ),
];

pub async fn serve(path: web::Path<String>) -> HttpResponse {
    let name = path.into_inner();
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, body)) => HttpResponse::Ok()
            .content_type(*ty)
            .insert_header(("Cache-Control", "public, max-age=300"))
            .body(*body),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such file"),
    }
}
