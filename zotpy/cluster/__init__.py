"""Scale-out clustering: repository ownership by SipHash, and forwarding to the owner."""
