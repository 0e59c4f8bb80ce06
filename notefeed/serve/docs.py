"""``/docs`` without the internet: Swagger UI served from the installed ``swagger-ui-bundle-v2``
package (FastAPI's default page loads it from a CDN, blank on an offline, self-hosted box).

Without the package, a small page of our own lists the endpoints of ``/openapi.json``; neither
page references any host but this one.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["add_docs", "ASSETS"]

#: where the Swagger UI files are served from
ASSETS = "/docs/assets"

_FALLBACK = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}} code{{background:#eee;padding:0 .3em}}
li{{margin:.3em 0}} .m{{font-weight:bold;display:inline-block;width:4.5em}}</style></head>
<body><h1>{title}</h1><p>Endpoints from <a href="{openapi}">{openapi}</a>
(install <code>swagger-ui-bundle-v2</code> for the interactive page).</p><ul id="eps"></ul>
<script>
fetch("{openapi}").then(r => r.json()).then(spec => {{
  const ul = document.getElementById("eps");
  for (const [path, ops] of Object.entries(spec.paths || {{}})) {{
    for (const [method, op] of Object.entries(ops)) {{
      const li = document.createElement("li");
      li.innerHTML = '<span class="m"></span><code></code> ';
      li.children[0].textContent = method.toUpperCase();
      li.children[1].textContent = path;
      li.append(op.summary || op.description || "");
      ul.append(li);
    }}
  }}
}});
</script></body></html>
"""


def add_docs(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """Add ``GET /docs`` (build the app with ``docs_url=None, redoc_url=None``)."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        swagger_ui_path = None
    title = f"{app.title} - API"
    if swagger_ui_path is not None and (swagger_ui_path / "swagger-ui-bundle.js").is_file():
        app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

        @app.get("/docs", include_in_schema=False)
        def docs() -> HTMLResponse:
            return get_swagger_ui_html(
                openapi_url=openapi_url, title=title,
                swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
                # the validator badge would call validator.swagger.io
                swagger_ui_parameters={"validatorUrl": None},
            )
        return

    page = _FALLBACK.format(title=title, openapi=openapi_url)

    @app.get("/docs", include_in_schema=False)
    def docs_fallback() -> HTMLResponse:
        return HTMLResponse(page)
