// Starts Swagger UI (swagger-ui-dist, served from this origin) on this API's own OpenAPI document.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  docExpansion: "list",
  filter: true,
  tryItOutEnabled: false,
  persistAuthorization: true,
  displayRequestDuration: true,
  showExtensions: true,
  // No calls to an online validator: the page must work offline.
  validatorUrl: null,
});
