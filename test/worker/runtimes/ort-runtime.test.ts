import { OrtRuntime } from "../../../worker/runtimes/ort/ort-runtime";
import { loadOrt } from "../../../worker/runtimes/ort/ort-workerd";
import { runtimeCases } from "./runtime.case";

runtimeCases("ort", () => new OrtRuntime(loadOrt), { seed: { maxAbsError: 1e-5 } });
