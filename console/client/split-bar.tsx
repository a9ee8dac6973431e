/** An alias drawn as its split: one bar, a segment per version sized by its weight; the shadow below. */
import { percent, WEIGHT_TOTAL } from "./format";
import type { AliasEntry } from "./types";

const SEGMENT_CLASSES = ["seg-a", "seg-b", "seg-c", "seg-d"];

export function SplitBar({ name, entry }: { name: string; entry: AliasEntry }) {
  return (
    <div class="alias" data-testid={`alias-${name}`}>
      <div class="alias-name">{name}</div>
      <div class="split" role="img" aria-label={`${name}: ${describe(entry)}`}>
        {entry.split.map((s, i) => (
          <div
            class={`segment ${SEGMENT_CLASSES[i % SEGMENT_CLASSES.length]}`}
            style={{ width: `${(s.weight / WEIGHT_TOTAL) * 100}%` }}
            title={`version ${s.version}: ${percent(s.weight)}`}
          >
            <span>
              v{s.version} {percent(s.weight)}
            </span>
          </div>
        ))}
      </div>
      {entry.shadow ? (
        <div class="shadow-bar" data-testid={`shadow-${name}`}>
          <div class="shadow-fill" style={{ width: `${entry.shadow.fraction * 100}%` }}>
            <span>
              shadow v{entry.shadow.version} {Number((entry.shadow.fraction * 100).toFixed(2))}%
            </span>
          </div>
        </div>
      ) : null}
    </div>
  );
}

function describe(entry: AliasEntry): string {
  const split = entry.split.map((s) => `version ${s.version} ${percent(s.weight)}`).join(", ");
  const shadow = entry.shadow
    ? `; shadow version ${entry.shadow.version} on ${Number((entry.shadow.fraction * 100).toFixed(2))}% of requests`
    : "";
  return split + shadow;
}
