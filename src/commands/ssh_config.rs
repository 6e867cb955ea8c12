//! `rssm ssh-config`: a ready `~/.ssh/config` block.

/// The block, pointing at this very binary.
pub fn text() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned))
        .unwrap_or_else(|| "rssm".into());
    format!(
        "# Reach EC2 instances and managed nodes by id through AWS Session Manager (rssm).\n\
         # Add --profile NAME or --region NAME after `proxy` to pin an account or region.\n\
         Host i-* mi-*\n    \
         ProxyCommand {exe} proxy %h %p\n    \
         User ec2-user\n"
    )
}
