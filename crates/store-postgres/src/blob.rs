//! The PostgreSQL blob store: one row per blob in `medkarta_blob`, so that every server
//! host using the database shares them. Its own small pool of connections; each put
//! commits on its own (before the transaction that refers to the blob), each get is one
//! query.

use postgres::{Config, NoTls};
use store::blob::{BlobStore, valid_id};
use store::{Result, StoreError};

use crate::pool::Pool;
use crate::{connect_error, err};

/// Connections of the blob store at most (uploads and downloads are few beside FHIR reads).
const MAX_CONNECTIONS: usize = 8;

/// Created (if missing) when the blob store opens: blobs are not part of the resource
/// tables and their versioned schema.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS medkarta_blob (\
     id TEXT COLLATE \"C\" PRIMARY KEY, \
     data BYTEA NOT NULL, \
     stored TIMESTAMPTZ NOT NULL DEFAULT now())";

/// Blobs in the database (see the module docs).
pub struct PgBlobs {
    pool: Pool,
}

impl PgBlobs {
    /// The blob store of the database at `url` (which must exist: the resource store
    /// creates it), its table created if missing.
    pub fn open(url: &str) -> Result<Self> {
        let config: Config = url.parse().map_err(|e| StoreError::Unavailable(format!("invalid database URL: {e}")))?;
        let mut client = config.connect(NoTls).map_err(|e| connect_error(&config, &e))?;
        client.batch_execute(SCHEMA).map_err(err)?;
        Ok(PgBlobs { pool: Pool::new(config, MAX_CONNECTIONS, client) })
    }
}

fn check_id(id: &str) -> Result<()> {
    if valid_id(id) { Ok(()) } else { Err(StoreError::Backend(format!("'{id}' is not a blob id"))) }
}

impl BlobStore for PgBlobs {
    fn backend(&self) -> &'static str {
        "postgresql"
    }

    fn put(&self, id: &str, bytes: &[u8]) -> Result<()> {
        check_id(id)?;
        let mut pooled = self.pool.get()?;
        let session = pooled.client()?;
        let st = session
            .statement(
                "INSERT INTO medkarta_blob (id, data) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, stored = now()",
            )
            .map_err(err)?;
        session.client.execute(&st, &[&id, &bytes]).map_err(err)?;
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<Vec<u8>>> {
        check_id(id)?;
        let mut pooled = self.pool.get()?;
        let session = pooled.client()?;
        let st = session.statement("SELECT data FROM medkarta_blob WHERE id = $1").map_err(err)?;
        let row = session.client.query_opt(&st, &[&id]).map_err(err)?;
        Ok(row.map(|r| r.get(0)))
    }
}
