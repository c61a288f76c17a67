import { workersTestConfig } from "./vitest.config";

// The catalog over two D1 databases (DB and CATALOG_1, both in wrangler.toml): `npm test` runs these files after the rest.
export default workersTestConfig({ vars: { CATALOG_PARTITIONS: "2" }, include: ["test/partitions/**/*.test.ts"] });
