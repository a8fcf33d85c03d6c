// Lint rules: typescript-eslint's recommended set everywhere, and no `any` at all in datapath/.
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/", ".wrangler/", "client/native/build/", "dist/"] },
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
    },
  },
  {
    files: ["datapath/**/*.ts"],
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "no-restricted-imports": ["error", { patterns: ["cloudflare:*", "node:*", ...folders("durable", "worker", "contract", "client")] }],
    },
  },
  // Folder boundaries (ARCHITECTURE.md): worker/ and durable/ meet only in contract/; neither imports the other.
  {
    files: ["contract/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: ["node:*", ...folders("durable", "worker", "client")] }] },
  },
  {
    files: ["durable/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: ["node:*", ...folders("worker", "client")] }] },
  },
  {
    // worker/index.ts is the entry point: it must export the Durable Object class, so it alone may name durable/.
    files: ["worker/**/*.ts"],
    ignores: ["worker/index.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: ["node:*", ...folders("durable", "client")] }] },
  },
  {
    files: ["client/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: ["cloudflare:*", ...folders("durable", "worker", "contract")] }] },
  },
);

/** Import patterns naming the project's top-level folders, from anywhere in the tree. */
function folders(...names) {
  return names.flatMap((name) => [`../${name}/*`, `../../${name}/*`, `../../../${name}/*`]);
}
