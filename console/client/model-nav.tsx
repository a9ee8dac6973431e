/** The tabs of one model's pages: overview, try it, promote. */
export type ModelTab = "model" | "try" | "promote";

const TABS: { tab: ModelTab; label: string; suffix: string }[] = [
  { tab: "model", label: "Overview", suffix: "" },
  { tab: "try", label: "Try it", suffix: "/try" },
  { tab: "promote", label: "Promote / roll back", suffix: "/promote" },
];

export function ModelNav({ name, current }: { name: string; current: ModelTab }) {
  return (
    <nav class="tabs" aria-label={`Model ${name}`}>
      {TABS.map(({ tab, label, suffix }) => (
        <a
          href={`#/models/${encodeURIComponent(name)}${suffix}`}
          aria-current={tab === current ? "page" : undefined}
        >
          {label}
        </a>
      ))}
    </nav>
  );
}
