//! Where each client's latest request came from, so that its reply goes
//! there, in bounded memory: a flood of requests from new client ids (only a
//! key holder can send one) cannot grow a replica without limit.
//!
//! The map is the runtime's alone (the core never reads it), so no other
//! replica needs to agree on what it forgets: two generations of at most
//! [`ClientAddresses::GENERATION_MAX`] clients each; when the newer one
//! fills, the older is dropped whole. A client that sent a request within
//! the last `GENERATION_MAX` requests' distinct clients is always found; one
//! forgotten gets no reply to that request and retries, which records its
//! address again.

use crate::core::ClientId;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Client addresses, bounded (see the module's comment).
#[derive(Debug, Default)]
pub struct ClientAddresses {
    newer: HashMap<ClientId, SocketAddr>,
    older: HashMap<ClientId, SocketAddr>,
}

impl ClientAddresses {
    /// Clients per generation: at most twice this many are held.
    pub const GENERATION_MAX: usize = 65_536;

    /// Notes that `client`'s latest request came from `address`.
    pub fn insert(&mut self, client: ClientId, address: SocketAddr) {
        if self.newer.len() >= Self::GENERATION_MAX && !self.newer.contains_key(&client) {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(client, address);
    }

    /// Where `client`'s latest request came from, if remembered.
    pub fn get(&self, client: ClientId) -> Option<SocketAddr> {
        self.newer
            .get(&client)
            .or_else(|| self.older.get(&client))
            .copied()
    }

    /// Clients remembered.
    pub fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_new_clients_keeps_at_most_two_generations_and_the_latest_clients() {
        let mut map = ClientAddresses::default();
        let address = |i: u64| SocketAddr::from(([127, 0, 0, 1], (i % 60_000) as u16 + 1));
        let flood = 5 * ClientAddresses::GENERATION_MAX as u64;
        for i in 0..flood {
            map.insert(ClientId(u128::from(i)), address(i));
            assert!(map.len() <= 2 * ClientAddresses::GENERATION_MAX);
        }
        let latest = flood - ClientAddresses::GENERATION_MAX as u64;
        for i in latest..flood {
            assert_eq!(
                map.get(ClientId(u128::from(i))),
                Some(address(i)),
                "client {i}"
            );
        }
        assert_eq!(map.get(ClientId(0)), None, "the oldest are forgotten");
    }

    #[test]
    fn a_client_that_keeps_sending_moves_with_its_latest_address() {
        let mut map = ClientAddresses::default();
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        let b = SocketAddr::from(([127, 0, 0, 1], 2));
        map.insert(ClientId(7), a);
        map.insert(ClientId(7), b);
        assert_eq!(map.get(ClientId(7)), Some(b));
        assert_eq!(map.len(), 1);
    }
}
