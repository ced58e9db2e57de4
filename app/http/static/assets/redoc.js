// Starts ReDoc on /redoc. A file rather than an inline script, so that the page's
// Content-Security-Policy can forbid inline script altogether.
"use strict";

(function startRedoc() {
  const root = document.getElementById("redoc");
  // ReDoc's default fonts (Roboto, Montserrat) are not bundled: pages usually fetch them from Google
  // Fonts. The system's own fonts need no request.
  const sans = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  const mono = 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace';
  Redoc.init(
    root.dataset.openapiUrl,
    {
      expandResponses: "200",
      hideHostname: false,
      theme: {
        typography: { fontFamily: sans, headings: { fontFamily: sans }, code: { fontFamily: mono } },
      },
    },
    root,
  );
})();
