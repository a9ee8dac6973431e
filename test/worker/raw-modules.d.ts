/** Vite's `?raw` imports: a file's text (the OpenAPI document in the tests). */
declare module "*?raw" {
  const text: string;
  export default text;
}
