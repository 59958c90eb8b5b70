//! Workspaces: removed when no deployment needs them.
