// Starts Swagger UI on /docs. It is a file rather than an inline script so that the page's
// Content-Security-Policy can forbid inline script altogether.
"use strict";

(function startSwaggerUi() {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    displayRequestDuration: true,
    presets: [SwaggerUIBundle.presets.apis],
    // By default Swagger UI sends the document's URL to validator.swagger.io for a badge.
    validatorUrl: null,
  });
})();
