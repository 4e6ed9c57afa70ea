# Written by wwboot (host overlay): csh users get the key pair of
# ssh_setup.sh, made by sh on first login.
if ( $?HOME && `id -u` != 0 && ! -f "$HOME/.ssh/cluster" ) then
    sh /etc/profile.d/ssh_setup.sh
endif
