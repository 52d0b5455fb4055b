"""OAuth2 mailboxes: each team's OAuth applications, and refreshing access tokens."""
