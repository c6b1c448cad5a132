"""How zotpy talks to other servers: kernel splicing of bodies, persistent connection pools, resolved endpoints."""
