//! The real AWS SDKs for STS, IAM and EC2 against the simulator's query-protocol services: every
//! call `rssm doctor` makes parses, errors come back as the SDK's modelled errors, and a wrong
//! key is refused.

mod common;

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, VpcAttributeName};
use rssm_sim::{SimConfig, Simulator};

const DEMO_VPC: &str = "vpc-0a1b2c3d4e5f60001";

async fn config(sim: &Simulator, secret: Option<&str>) -> SdkConfig {
    let c = &sim.config().credentials;
    let secret = secret.unwrap_or(&c.secret_access_key);
    common::sdk::config(sim, &c.access_key_id, secret).await
}

#[tokio::test]
async fn sts_names_the_caller_and_refuses_a_wrong_secret() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let sts = aws_sdk_sts::Client::new(&config(&sim, None).await);
    let me = sts.get_caller_identity().send().await.unwrap();
    assert_eq!(me.account(), Some("123456789012"));
    assert_eq!(me.arn(), Some("arn:aws:iam::123456789012:user/rssm-sim"));
    assert!(me.user_id().is_some_and(|u| u.starts_with("AIDA")));

    let bad = aws_sdk_sts::Client::new(&config(&sim, Some("wrong")).await);
    let err = bad.get_caller_identity().send().await.unwrap_err();
    let code = err.into_service_error().meta().code().map(str::to_owned);
    assert_eq!(code.as_deref(), Some("SignatureDoesNotMatch"));
}

#[tokio::test]
async fn iam_describes_the_demo_role_and_simulates_the_caller() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let iam = aws_sdk_iam::Client::new(&config(&sim, None).await);
    let profile = iam
        .get_instance_profile()
        .instance_profile_name("rssm-demo-ssm")
        .send()
        .await
        .unwrap();
    let roles = profile.instance_profile().unwrap().roles();
    assert_eq!(roles[0].role_name(), "rssm-demo-ssm");

    let attached = iam
        .list_attached_role_policies()
        .role_name("rssm-demo-ssm")
        .send()
        .await
        .unwrap();
    let arn = attached.attached_policies()[0]
        .policy_arn()
        .unwrap()
        .to_owned();
    assert_eq!(arn, "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore");
    let inline = iam
        .list_role_policies()
        .role_name("rssm-demo-ssm")
        .send()
        .await
        .unwrap();
    assert!(inline.policy_names().is_empty());
    let policy = iam.get_policy().policy_arn(&arn).send().await.unwrap();
    let version = policy
        .policy()
        .unwrap()
        .default_version_id()
        .unwrap()
        .to_owned();
    let doc = iam
        .get_policy_version()
        .policy_arn(&arn)
        .version_id(version)
        .send()
        .await
        .unwrap();
    let text = doc.policy_version().unwrap().document().unwrap();
    assert!(
        text.contains("ssmmessages%3ACreateControlChannel"),
        "{text}"
    );

    let missing = iam
        .get_instance_profile()
        .instance_profile_name("nope")
        .send()
        .await
        .unwrap_err();
    assert!(missing.into_service_error().is_no_such_entity_exception());

    let sim_out = iam
        .simulate_principal_policy()
        .policy_source_arn("arn:aws:iam::123456789012:user/rssm-sim")
        .action_names("ssm:StartSession")
        .action_names("ssm:TerminateSession")
        .resource_arns("arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0")
        .send()
        .await
        .unwrap();
    let decisions: Vec<&str> = sim_out
        .evaluation_results()
        .iter()
        .map(|r| r.eval_decision().as_str())
        .collect();
    assert_eq!(decisions, ["allowed", "allowed"]);
}

#[tokio::test]
async fn ec2_describes_the_demo_network() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&config(&sim, None).await);
    let vpc = || Filter::builder().name("vpc-id").values(DEMO_VPC).build();

    let out = ec2
        .describe_instances()
        .instance_ids("i-0123456789abcdef0")
        .send()
        .await
        .unwrap();
    let i = &out.reservations()[0].instances()[0];
    assert_eq!(i.vpc_id(), Some(DEMO_VPC));
    assert_eq!(i.subnet_id(), Some("subnet-0a1b2c3d4e5f60010"));
    assert_eq!(
        i.security_groups()[0].group_id(),
        Some("sg-0a1b2c3d4e5f60010")
    );
    assert!(i
        .iam_instance_profile()
        .and_then(|p| p.arn())
        .is_some_and(|a| a.ends_with(":instance-profile/rssm-demo-ssm")));
    let unknown = ec2
        .describe_instances()
        .instance_ids("i-0000000000000000f")
        .send()
        .await
        .unwrap_err();
    let code = unknown
        .into_service_error()
        .meta()
        .code()
        .map(str::to_owned);
    assert_eq!(code.as_deref(), Some("InvalidInstanceID.NotFound"));

    let dns = ec2
        .describe_vpc_attribute()
        .vpc_id(DEMO_VPC)
        .attribute(VpcAttributeName::EnableDnsSupport)
        .send()
        .await
        .unwrap();
    assert_eq!(dns.enable_dns_support().and_then(|v| v.value()), Some(true));

    let subnets = ec2.describe_subnets().filters(vpc()).send().await.unwrap();
    assert_eq!(subnets.subnets().len(), 2);
    assert_eq!(subnets.subnets()[0].availability_zone(), Some("us-east-1a"));

    let tables = ec2
        .describe_route_tables()
        .filters(vpc())
        .send()
        .await
        .unwrap();
    let main = &tables.route_tables()[0];
    assert!(main.associations().iter().any(|a| a.main() == Some(true)));
    assert_eq!(main.routes()[0].gateway_id(), Some("local"));

    let endpoints = ec2
        .describe_vpc_endpoints()
        .filters(vpc())
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = endpoints
        .vpc_endpoints()
        .iter()
        .filter_map(|e| e.service_name())
        .collect();
    assert_eq!(
        names,
        [
            "com.amazonaws.us-east-1.ssm",
            "com.amazonaws.us-east-1.ssmmessages",
            "com.amazonaws.us-east-1.ec2messages"
        ]
    );
    let ep = &endpoints.vpc_endpoints()[0];
    assert_eq!(ep.private_dns_enabled(), Some(true));
    assert_eq!(ep.state().map(|s| s.as_str()), Some("available"));
    assert_eq!(ep.subnet_ids(), ["subnet-0a1b2c3d4e5f60011"]);

    let groups = ec2
        .describe_security_groups()
        .filters(vpc())
        .send()
        .await
        .unwrap();
    let endpoint_sg = groups
        .security_groups()
        .iter()
        .find(|g| g.group_id() == Some("sg-0a1b2c3d4e5f60011"))
        .unwrap();
    let rule = &endpoint_sg.ip_permissions()[0];
    assert_eq!((rule.from_port(), rule.to_port()), (Some(443), Some(443)));
    assert_eq!(rule.ip_ranges()[0].cidr_ip(), Some("10.0.0.0/16"));

    let acls = ec2
        .describe_network_acls()
        .filters(vpc())
        .send()
        .await
        .unwrap();
    let acl = &acls.network_acls()[0];
    assert_eq!(acl.is_default(), Some(true));
    assert_eq!(acl.entries().len(), 4);
    assert_eq!(acl.associations().len(), 2);

    let err = ec2
        .describe_subnets()
        .filters(Filter::builder().name("colour").values("x").build())
        .send()
        .await
        .unwrap_err();
    let code = err.into_service_error().meta().code().map(str::to_owned);
    assert_eq!(code.as_deref(), Some("InvalidParameterValue"));
}
