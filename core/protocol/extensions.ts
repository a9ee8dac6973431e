/**
 * @module
 * The protocol extensions this server supports, as `GET /v2` lists them. One
 * list in one place: whoever adds an extension appends its name here (and
 * documents it in docs/api.md), so server metadata never claims more, or
 * less, than what answers.
 */
export const SUPPORTED_EXTENSIONS: readonly string[] = [
  // Inference-Header-Content-Length framing, binary inputs and outputs (binary-request.ts)
  "binary_tensor_data",
  // `classification: k` on a requested output (core/serving/classification.ts)
  "classification",
  // GET /v2/models/{name}[/versions/{v}|/aliases/{a}]/config (core/protocol/model-config.ts)
  "model_configuration",
  // POST /v2/repository/index, /v2/repository/models/{name}/load and /unload
  "model_repository",
  // request `parameters`: custom ones accepted; `alias` and `runtime` honoured; Triton's
  // reserved ones (priority, timeout, sequence_*) accepted and ignored (docs/api.md)
  "parameters",
  // GET /v2/models[/{name}[/versions/{v}|/aliases/{a}]]/stats, from the live metrics
  // (core/serving/statistics.ts; the edge only: the origin answers 501 and does not list it)
  "statistics",
];
