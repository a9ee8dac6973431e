import { OrtRuntime } from "../../../core/runtimes/ort/ort-runtime";
import { loadOrt } from "../../../worker/ort-workerd";
import { runtimeCases } from "./runtime.case";

runtimeCases("ort", () => new OrtRuntime(loadOrt), { seed: { maxAbsError: 1e-5 } });
