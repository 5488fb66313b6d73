//! The legacy factory: a client that speaks its wire contract (`POST /api/manufactures`) and a
//! faithful simulator of it for tests and `restock dev`. Filled in by the workflow issue.
