# Shell helpers for tests that run a private Postfix instance (bash; sourced).
# See ../shared/PLATFORM.md for why each setting is there. Needs root: the
# postfix, postsuper and postcat commands and queue files are root/postfix only.
#
#   postfix_free_port                     prints a free TCP port on 127.0.0.1
#   postfix_instance_create DIR PORT [MILTER_SPEC]
#                                         writes DIR/etc (main.cf, master.cf), DIR/queue,
#                                         DIR/data, DIR/mail (virtual mailboxes, uid 65534) and
#                                         DIR/maillog; SMTP on 127.0.0.1:PORT only
#   postfix_instance_start DIR            starts it and waits for the master's pid file
#   postfix_instance_stop DIR             stops the master by its PID and waits until it is gone
#   postfix_wait_delivered DIR DOMAIN N [TIMEOUT_S]
#                                         waits until DOMAIN's Maildir holds N messages
#   postfix_maildir DIR DOMAIN            prints the Maildir "new" directory of DOMAIN
#   postfix_postconf DIR ARGS...          postconf on the instance's config directory
#
# Mail for any address of test.example or sender.example is delivered by the virtual
# agent to one Maildir per domain, DIR/mail/DOMAIN/ (the virtual agent refuses regexp
# substitutions, so a per-address layout would need every address listed; tell
# recipients apart by the Delivered-To header); every other domain bounces (error transport),
# so nothing ever leaves the machine. Every command gets -c DIR/etc; main.cf never
# names config_directory.

postfix_free_port() {
    # Bind port 0 and report what the kernel chose; node is part of our dependency set. Without
    # it, probe random ports with bash's /dev/tcp: a refused connection means nobody listens.
    if command -v node >/dev/null 2>&1; then
        node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
        return
    fi
    local port i
    for i in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "postfix_free_port: no free port found" >&2
    return 1
}

postfix_postconf() {
    local dir=$1
    shift
    postconf -c "$dir/etc" "$@"
}

postfix_instance_create() {
    local dir=$1 port=$2 milter=${3:-}
    [ -n "$dir" ] && [ -n "$port" ] || {
        echo "usage: postfix_instance_create DIR PORT [MILTER_SPEC]" >&2
        return 2
    }
    mkdir -p "$dir/etc" "$dir/queue" "$dir/data" "$dir/mail" || return 1
    cp /etc/postfix/main.cf /etc/postfix/master.cf "$dir/etc/" || return 1
    # Catch-all virtual mailboxes, one Maildir per domain (trailing slash: Maildir). texthash
    # needs no postmap.
    printf '@test.example test.example/\n@sender.example sender.example/\n' >"$dir/etc/vmailbox"
    chown 65534:65534 "$dir/mail"
    postconf -c "$dir/etc" -e \
        "queue_directory = $dir/queue" \
        "data_directory = $dir/data" \
        "myhostname = mx.test.example" \
        "mydomain = test.example" \
        "myorigin = test.example" \
        "mydestination =" \
        "inet_interfaces = loopback-only" \
        "inet_protocols = ipv4" \
        "mynetworks = 127.0.0.0/8" \
        "alias_maps =" \
        "alias_database =" \
        "virtual_mailbox_domains = test.example, sender.example" \
        "virtual_mailbox_base = $dir/mail" \
        "virtual_mailbox_maps = texthash:$dir/etc/vmailbox" \
        "virtual_uid_maps = static:65534" \
        "virtual_gid_maps = static:65534" \
        "default_transport = error" \
        "relay_transport = error" \
        "maillog_file = $dir/maillog" \
        "maillog_file_prefixes = $dir" \
        "smtpd_client_connection_count_limit = 0" \
        "smtpd_client_connection_rate_limit = 0" \
        "smtpd_client_message_rate_limit = 0" \
        "smtpd_client_recipient_rate_limit = 0" \
        "smtpd_client_new_tls_session_rate_limit = 0" \
        "milter_default_action = tempfail" \
        "milter_protocol = 6" \
        "smtpd_milters = $milter" \
        "delay_warning_time = 0" \
        "queue_run_delay = 1s" \
        "minimal_backoff_time = 1s" \
        "maximal_backoff_time = 2s" || return 1
    # chroot off everywhere: a unix milter path would otherwise resolve inside the spool.
    postconf -c "$dir/etc" -F '*/*/chroot = n' || return 1
    postconf -c "$dir/etc" -MX smtp/inet || return 1
    postconf -c "$dir/etc" -M "127.0.0.1:$port/inet = 127.0.0.1:$port inet n - n - - smtpd" ||
        return 1
    postfix -c "$dir/etc" set-permissions >/dev/null 2>&1 || {
        echo "postfix_instance_create: set-permissions failed" >&2
        return 1
    }
    postfix -c "$dir/etc" check || {
        echo "postfix_instance_create: postfix check failed for $dir/etc" >&2
        return 1
    }
}

postfix_instance_start() {
    local dir=$1 i
    postfix -c "$dir/etc" start >/dev/null 2>&1 || {
        echo "postfix_instance_start: postfix start failed; log: $(tail -5 "$dir/maillog" 2>/dev/null)" >&2
        return 1
    }
    for i in $(seq 1 100); do
        [ -s "$dir/queue/pid/master.pid" ] && return 0
        sleep 0.05
    done
    echo "postfix_instance_start: no master.pid after 5 s" >&2
    return 1
}

# Stops the master (it stops its children) by the PID in its pid file.
postfix_instance_stop() {
    local dir=$1 pid i
    pid=$(tr -d ' \n' <"$dir/queue/pid/master.pid" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    # The pid file may be stale: act only on a process that is Postfix's master.
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "master" ]; then
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        [ -d "/proc/$pid" ] || return 0
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null
    return 0
}

postfix_maildir() {
    local dir=$1 domain=$2
    echo "$dir/mail/$domain/new"
}

postfix_wait_delivered() {
    local dir=$1 domain=$2 want=$3 timeout=${4:-20} maildir n=0 i
    maildir=$(postfix_maildir "$dir" "$domain")
    for i in $(seq 1 $((timeout * 10))); do
        n=$(find "$maildir" -type f 2>/dev/null | wc -l)
        [ "$n" -ge "$want" ] && return 0
        sleep 0.1
    done
    echo "postfix_wait_delivered: $domain has $n of $want messages after ${timeout}s" >&2
    return 1
}
