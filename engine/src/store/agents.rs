//! The agents an admin disabled, by name: kept across restarts, so that a disabled agent that
//! comes back to a restarted server still takes no new job.

use redb::{ReadableTable, TableDefinition};

use super::{Store, StoreError, storage};

const DISABLED: TableDefinition<'_, &str, ()> = TableDefinition::new("agents_disabled");

impl Store {
    /// Every agent disabled, by name.
    pub fn disabled_agents(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = match txn.open_table(DISABLED) {
            Ok(table) => table,
            // No agent was ever disabled.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage(e)),
        };
        let mut names = Vec::new();
        for entry in table.iter().map_err(storage)? {
            names.push(entry.map_err(storage)?.0.value().to_owned());
        }
        Ok(names)
    }

    /// Records agent `name` as disabled or not, durably.
    pub fn set_agent_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(DISABLED).map_err(storage)?;
            if disabled {
                table.insert(name, ()).map_err(storage)?;
            } else {
                table.remove(name).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_agent_stays_disabled_across_a_reopen_until_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.disabled_agents().unwrap().is_empty());
        store.set_agent_disabled("a1", true).unwrap();
        store.set_agent_disabled("a2", true).unwrap();
        store.set_agent_disabled("a2", false).unwrap();
        store.set_agent_disabled("a3", false).unwrap(); // never disabled: nothing to remove
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.disabled_agents().unwrap(), ["a1"]);
    }
}
