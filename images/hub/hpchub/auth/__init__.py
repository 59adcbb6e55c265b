"""Authenticators. `sshproxy`: username + password + OTP exchanged for an SSH key and
certificate at the site's key-issuing API. OAuth/OIDC is oauthenticator's
GenericOAuthenticator, configured by `hpchub.config`; `groups` maps IdP groups to console
roles for both (see `hpchub.access.user_groups`)."""
