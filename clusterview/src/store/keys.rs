//! The key layout in etcd (docs/protocol.md, "Who writes what"): everything of one cluster lives under
//! `<store-prefix>/<cluster-name>/`. Kept in one place so no component builds a key by hand.

/// The kinds of component that publish an info under a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoKind {
    Keeper,
    Sentinel,
    Proxy,
}

impl InfoKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InfoKind::Keeper => "keepers",
            InfoKind::Sentinel => "sentinels",
            InfoKind::Proxy => "proxies",
        }
    }
}

/// Keys of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `<prefix>/<cluster>/`, always ending with one slash.
    root: String,
}

impl Keys {
    /// `prefix` as given by `--store-prefix` (slashes at either end are ignored), `cluster` the
    /// `--cluster-name`.
    pub fn new(prefix: &str, cluster: &str) -> Keys {
        let prefix = prefix.trim_matches('/');
        let root = if prefix.is_empty() { format!("{cluster}/") } else { format!("{prefix}/{cluster}/") };
        Keys { root }
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn cluster_data(&self) -> String {
        format!("{}clusterdata", self.root)
    }

    pub fn info_prefix(&self, kind: InfoKind) -> String {
        format!("{}{}/info/", self.root, kind.as_str())
    }

    pub fn info(&self, kind: InfoKind, uid: &str) -> String {
        format!("{}{}", self.info_prefix(kind), uid)
    }

    pub fn sentinel_leader(&self) -> String {
        format!("{}sentinel-leader", self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_design() {
        let keys = Keys::new("stolon/cluster", "kube");
        assert_eq!(keys.cluster_data(), "stolon/cluster/kube/clusterdata");
        assert_eq!(keys.info(InfoKind::Keeper, "k1"), "stolon/cluster/kube/keepers/info/k1");
        assert_eq!(keys.info(InfoKind::Sentinel, "s1"), "stolon/cluster/kube/sentinels/info/s1");
        assert_eq!(keys.info(InfoKind::Proxy, "p1"), "stolon/cluster/kube/proxies/info/p1");
        assert_eq!(keys.sentinel_leader(), "stolon/cluster/kube/sentinel-leader");
        assert_eq!(Keys::new("/a/b/", "c").cluster_data(), "a/b/c/clusterdata");
        assert_eq!(Keys::new("", "c").cluster_data(), "c/clusterdata");
    }
}
