/**
 * Try it: a form built from the model's input metadata (a file upload for an
 * image-shaped input, a text box of numbers or token ids otherwise) that sends
 * a real OIP infer request to a chosen version or alias, and shows the
 * outputs (top-k for classifiers), what served it and how long it took.
 */
import { useEffect, useState } from "hono/jsx/dom";
import { admin, explain, infer, oip, path, ApiError, type InferResult } from "./api";
import { ErrorBox, Loading, PageHeading, TableScroll, useLoad } from "./common";
import { ModelNav } from "./model-nav";
import type {
  AliasDocument,
  ModelMetadata,
  OutputTensor,
  TensorSpec,
  VersionSummary,
} from "./types";

const INTEGER_TYPES = new Set([
  "INT8",
  "INT16",
  "INT32",
  "INT64",
  "UINT8",
  "UINT16",
  "UINT32",
  "UINT64",
]);
/** An output's values listed on the page; the rest are counted. */
const SHOWN_VALUES = 1000;
/** Bounds what the text boxes accept before anything is allocated for it. */
const MAX_VALUES = 1_000_000;

/** `[batch, channels, height, width]` with 1 or 3 channels: offered as an image upload. */
export function imageShape(
  spec: TensorSpec,
): { channels: number; height: number; width: number } | null {
  if (spec.shape.length !== 4 || INTEGER_TYPES.has(spec.datatype) || spec.datatype === "BYTES")
    return null;
  const [, channels, height, width] = spec.shape as [number, number, number, number];
  if ((channels !== 1 && channels !== 3) || height < 2 || width < 2) return null;
  return { channels, height, width };
}

/** The numbers in a text box: any separators, brackets ignored. */
export function parseValues(text: string, datatype: string): number[] {
  const tokens = text.split(/[\s,;[\]]+/).filter(Boolean);
  if (tokens.length > MAX_VALUES) throw new Error(`at most ${MAX_VALUES} values`);
  return tokens.map((token) => {
    const value = Number(token);
    if (!Number.isFinite(value))
      throw new Error(`${JSON.stringify(token.slice(0, 20))} is not a number`);
    if (INTEGER_TYPES.has(datatype) && !Number.isInteger(value)) {
      throw new Error(`${token} is not an integer (${datatype})`);
    }
    return value;
  });
}

/** The shape to send: the metadata's, with a -1 (any size) solved from the number of values. */
export function concreteShape(spec: TensorSpec, count: number): number[] {
  const known = spec.shape.reduce((product, d) => (d > 0 ? product * d : product), 1);
  const free = spec.shape.filter((d) => d < 0).length;
  if (free === 0) {
    if (count !== known) throw new Error(`${spec.name} takes ${known} values, not ${count}`);
    return spec.shape;
  }
  if (count === 0 || count % known !== 0) {
    throw new Error(`${spec.name}: ${count} values do not fill a shape [${spec.shape.join(", ")}]`);
  }
  // The first free dimension takes what is left; any other is 1.
  let left = count / known;
  return spec.shape.map((d) => {
    if (d > 0) return d;
    const size = left;
    left = 1;
    return size;
  });
}

function zeros(spec: TensorSpec): string {
  const count = spec.shape.reduce((product, d) => product * (d > 0 ? d : 1), 1);
  return new Array(count).fill(0).join(", ");
}

/** Draws the picture at the input's height × width and reads it back as values in [0, 1]. */
async function imageValues(
  file: File,
  shape: { channels: number; height: number; width: number },
): Promise<number[]> {
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement("canvas");
  canvas.width = shape.width;
  canvas.height = shape.height;
  const context = canvas.getContext("2d")!;
  context.drawImage(bitmap, 0, 0, shape.width, shape.height);
  const { data } = context.getImageData(0, 0, shape.width, shape.height);
  const plane = shape.width * shape.height;
  const values = new Array<number>(plane * shape.channels);
  for (let i = 0; i < plane; i++) {
    const [r, g, b] = [data[i * 4]!, data[i * 4 + 1]!, data[i * 4 + 2]!];
    if (shape.channels === 1)
      values[i] = Number(((0.299 * r + 0.587 * g + 0.114 * b) / 255).toFixed(4));
    else [r, g, b].forEach((c, k) => (values[k * plane + i] = Number((c / 255).toFixed(4))));
  }
  return values;
}

interface Targets {
  versions: VersionSummary[];
  aliases: string[];
}

export function TryItPage({ name }: { name: string }) {
  const model = `models/${path(name)}`;
  const targets = useLoad(async (): Promise<Targets> => {
    const [versions, aliases] = await Promise.all([
      admin<{ versions: VersionSummary[] }>(`${model}/versions`),
      admin<AliasDocument>(`${model}/aliases`),
    ]);
    return { versions: versions.versions, aliases: Object.keys(aliases.aliases).sort() };
  }, [name]);
  const [target, setTarget] = useState("");
  const oipPath = `models/${path(name)}${target}`;
  const metadata = useLoad(() => oip<ModelMetadata>(oipPath), [oipPath]);
  const [texts, setTexts] = useState<Record<string, string>>({});
  const [formError, setFormError] = useState<Error | undefined>(undefined);
  const [result, setResult] = useState<InferResult | undefined>(undefined);
  const [busy, setBusy] = useState(false);

  useEffect(() => setResult(undefined), [oipPath]);

  const [explanation, setExplanation] = useState<InferResult | undefined>(undefined);

  useEffect(() => setExplanation(undefined), [oipPath]);

  /** The form as an OIP request; a bad value is shown, and nothing is sent. */
  const requestOf = () => {
    if (!metadata.data) return undefined;
    setFormError(undefined);
    try {
      return {
        inputs: metadata.data.inputs.map((spec) => {
          const data = parseValues(texts[spec.name] ?? "", spec.datatype);
          return {
            name: spec.name,
            datatype: spec.datatype,
            shape: concreteShape(spec, data.length),
            data,
          };
        }),
      };
    } catch (error) {
      setFormError(error as Error);
      return undefined;
    }
  };

  const send = async (call: () => Promise<void>) => {
    setBusy(true);
    try {
      await call();
    } catch (error) {
      setFormError(error as Error);
    } finally {
      setBusy(false);
    }
  };

  const run = async (event: Event) => {
    event.preventDefault();
    const request = requestOf();
    if (request) await send(async () => setResult(await infer(oipPath, request)));
  };

  // Occlusion for image-shaped inputs, KernelSHAP otherwise; a fixed seed, so the same form
  // gives the same attributions (and the API's own answer for the same request).
  const image = metadata.data?.inputs[0] ? imageShape(metadata.data.inputs[0]) : null;
  const runExplain = async () => {
    const request = requestOf();
    if (!request) return;
    const parameters = { method: image ? "occlusion" : "shap", seed: 1 };
    await send(async () => setExplanation(await explain(oipPath, { ...request, parameters })));
  };

  return (
    <section>
      <PageHeading>{name}: try it</PageHeading>
      <ModelNav name={name} current="try" />
      <ErrorBox error={targets.error} />
      <form onSubmit={run} class="try">
        <label for="target">Send to</label>
        <select
          id="target"
          value={target}
          onChange={(e: Event) => setTarget((e.target as HTMLSelectElement).value)}
        >
          <option value="">default (production, else the latest version)</option>
          {targets.data?.versions.map((v) => (
            <option value={`/versions/${v.version}`}>
              version {v.version} ({v.runtime})
            </option>
          ))}
          {targets.data?.aliases.map((a) => (
            <option value={`/aliases/${encodeURIComponent(a)}`}>alias {a}</option>
          ))}
        </select>
        <ErrorBox error={metadata.error} title="Metadata" />
        {!metadata.data && !metadata.error ? <Loading what="input metadata" /> : null}
        {metadata.data?.inputs.map((spec) => (
          <InputField
            spec={spec}
            text={texts[spec.name] ?? ""}
            onText={(text) => setTexts((old) => ({ ...old, [spec.name]: text }))}
          />
        ))}
        <button type="submit" disabled={busy || !metadata.data}>
          {busy ? "Running…" : "Run inference"}
        </button>{" "}
        <button
          type="button"
          class="secondary"
          disabled={busy || !metadata.data}
          onClick={runExplain}
        >
          Explain
        </button>
      </form>
      <ErrorBox error={formError} />
      {result ? <ResultView result={result} /> : null}
      {explanation ? <ExplanationView result={explanation} image={image} /> : null}
    </section>
  );
}

function InputField({
  spec,
  text,
  onText,
}: {
  spec: TensorSpec;
  text: string;
  onText: (text: string) => void;
}) {
  const image = imageShape(spec);
  const id = `input-${spec.name}`;
  const [fileError, setFileError] = useState<Error | undefined>(undefined);
  const kind = INTEGER_TYPES.has(spec.datatype) ? "integers (e.g. token ids)" : "numbers";
  return (
    <fieldset class="input">
      <legend>
        <code>{spec.name}</code> {spec.datatype} [{spec.shape.join(", ")}]
      </legend>
      {image ? (
        <div class="file">
          <label for={`${id}-file`}>
            Image file (drawn at {image.width}×{image.height},{" "}
            {image.channels === 1 ? "grey" : "RGB"}, values 0–1)
          </label>
          <input
            id={`${id}-file`}
            type="file"
            accept="image/*"
            onChange={async (e: Event) => {
              const file = (e.target as HTMLInputElement).files?.[0];
              if (!file) return;
              setFileError(undefined);
              try {
                onText((await imageValues(file, image)).join(", "));
              } catch (error) {
                setFileError(error as Error);
              }
            }}
          />
          <ErrorBox error={fileError} title="Image" />
        </div>
      ) : null}
      <label for={id}>Values: {kind}, row-major; -1 in the shape takes whatever count fits</label>
      <textarea
        id={id}
        name={spec.name}
        rows={4}
        spellcheck={false}
        value={text}
        onInput={(e: Event) => onText((e.target as HTMLTextAreaElement).value)}
      />
      <button type="button" class="secondary" onClick={() => onText(zeros(spec))}>
        Fill with zeros
      </button>
    </fieldset>
  );
}

function topK(values: number[], k: number): { index: number; value: number }[] {
  return values
    .map((value, index) => ({ index, value }))
    .sort((a, b) => b.value - a.value)
    .slice(0, k);
}

function ResultView({ result }: { result: InferResult }) {
  const ok = result.status >= 200 && result.status < 300;
  const body = result.body as { outputs?: OutputTensor[]; error?: string };
  return (
    <section class="result" aria-live="polite" data-testid="result">
      <h2>Answer</h2>
      <dl class="facts">
        <dt>status</dt>
        <dd data-testid="status">{result.status}</dd>
        <dt>time in the browser</dt>
        <dd>{result.milliseconds.toFixed(1)} ms</dd>
        {Object.entries(result.headers).map(([name, value]) => (
          <>
            <dt>{name}</dt>
            <dd data-header={name}>{value}</dd>
          </>
        ))}
      </dl>
      {!ok ? (
        <ErrorBox
          error={new ApiError(result.status, body.error ?? JSON.stringify(body), {})}
          title="Inference failed"
        />
      ) : null}
      {body.outputs?.map((output) => (
        <OutputView output={output} />
      ))}
    </section>
  );
}

function OutputView({ output }: { output: OutputTensor }) {
  const values = output.data.flat(Infinity as 1) as unknown[];
  const numeric = values.every((v) => typeof v === "number");
  const classes = output.shape.at(-1) ?? 0;
  const classifier =
    numeric && output.shape.length === 2 && classes >= 3 && !INTEGER_TYPES.has(output.datatype);
  const rows = classifier ? Math.min(output.shape[0]!, 4) : 0;
  return (
    <div class="output" data-output={output.name}>
      <h3>
        <code>{output.name}</code> {output.datatype} [{output.shape.join(", ")}]
      </h3>
      {classifier
        ? Array.from({ length: rows }, (_, row) => (
            <div>
              <p>
                Largest {Math.min(5, classes)} (top-k, for classifiers)
                {output.shape[0]! > 1 ? `, row ${row}` : ""}:
              </p>
              <ol class="topk" data-testid="topk">
                {topK(values.slice(row * classes, (row + 1) * classes) as number[], 5).map((t) => (
                  <li>
                    class {t.index}: {t.value}
                  </li>
                ))}
              </ol>
            </div>
          ))
        : null}
      <TableScroll label={`Values of ${output.name}`}>
        <ol class="values" start={0} data-testid="values">
          {values.slice(0, SHOWN_VALUES).map((v) => (
            <li>{String(v)}</li>
          ))}
        </ol>
      </TableScroll>
      {values.length > SHOWN_VALUES ? (
        <p class="muted">
          The first {SHOWN_VALUES} of {values.length} values.
        </p>
      ) : null}
    </div>
  );
}

/** The attributions most worth reading: the largest by magnitude. */
const SHOWN_ATTRIBUTIONS = 10;

/**
 * An explanation (docs/explain.md): what was explained and against what, then
 * the attributions — a heatmap over an image-shaped input (red adds to the
 * target, blue takes from it), else the largest as bars.
 */
function ExplanationView({
  result,
  image,
}: {
  result: InferResult;
  image: { channels: number; height: number; width: number } | null;
}) {
  const ok = result.status >= 200 && result.status < 300;
  const body = result.body as {
    outputs?: OutputTensor[];
    parameters?: Record<string, unknown>;
    error?: string;
  };
  const attributions = body.outputs?.find((o) => o.name === "attributions");
  const values = (attributions?.data.flat(Infinity as 1) ?? []) as number[];
  const largest = Math.max(...values.map(Math.abs), 0) || 1;
  const p = body.parameters ?? {};
  const fmt = (v: unknown) =>
    typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(6) : String(v ?? "-");
  return (
    <section class="result" aria-live="polite" data-testid="explanation">
      <h2>Explanation</h2>
      {!ok ? (
        <ErrorBox
          error={new ApiError(result.status, body.error ?? JSON.stringify(body), {})}
          title="Explanation failed"
        />
      ) : (
        <dl class="facts">
          <dt>method</dt>
          <dd data-testid="method">{fmt(p.method)}</dd>
          <dt>baseline</dt>
          <dd>{fmt(p.baseline)}</dd>
          <dt>evaluations</dt>
          <dd>{fmt(p.evaluations)}</dd>
          <dt>
            output {fmt(p.target_output)}[{fmt(p.target)}]
          </dt>
          <dd>
            {fmt(p.prediction)} (baseline {fmt(p.base_value)})
          </dd>
          <dt>time in the browser</dt>
          <dd>{result.milliseconds.toFixed(1)} ms</dd>
        </dl>
      )}
      {ok && image ? (
        <div
          class="heatmap"
          role="img"
          aria-label={`Attributions over the ${image.height}×${image.width} image: red adds to the output, blue takes from it`}
          data-testid="heatmap"
          style={`grid-template-columns: repeat(${image.width}, 1fr)`}
        >
          {values.slice(0, image.height * image.width).map((v) => (
            <span
              data-value={String(v)}
              style={`background: ${v >= 0 ? "rgba(200, 30, 30," : "rgba(30, 80, 200,"} ${(Math.abs(v) / largest).toFixed(3)})`}
            />
          ))}
        </div>
      ) : null}
      {ok && !image ? (
        <ol class="attributions" data-testid="attributions">
          {values
            .map((value, index) => ({ value, index }))
            .sort((a, b) => Math.abs(b.value) - Math.abs(a.value))
            .slice(0, SHOWN_ATTRIBUTIONS)
            .map(({ value, index }) => (
              <li data-index={index} data-value={String(value)}>
                <span class="name">input[{index}]</span>
                <span
                  class={value >= 0 ? "bar up" : "bar down"}
                  style={`width: ${((50 * Math.abs(value)) / largest).toFixed(1)}%`}
                />
                <span class="value">{value.toPrecision(4)}</span>
              </li>
            ))}
        </ol>
      ) : null}
    </section>
  );
}
