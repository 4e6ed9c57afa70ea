# Written by wwboot (host overlay): gives each user a key pair for ssh
# between the cluster's nodes on first login, authorized for that user.
if [ -n "$HOME" ] && [ "$(id -u)" -ne 0 ] && [ ! -f "$HOME/.ssh/cluster" ]; then
    mkdir -p -m 0700 "$HOME/.ssh" &&
        ssh-keygen -q -t ed25519 -N '' -C "cluster key of $(id -un)" -f "$HOME/.ssh/cluster" &&
        cat "$HOME/.ssh/cluster.pub" >>"$HOME/.ssh/authorized_keys" &&
        chmod 0600 "$HOME/.ssh/authorized_keys" &&
        if ! grep -qs '^IdentityFile ~/.ssh/cluster' "$HOME/.ssh/config"; then
            printf '# Added by wwboot\nHost *\n    IdentityFile ~/.ssh/cluster\n    StrictHostKeyChecking accept-new\n' >>"$HOME/.ssh/config"
            chmod 0600 "$HOME/.ssh/config"
        fi
fi
