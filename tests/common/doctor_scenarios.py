"""Builds one `rssm doctor` scenario in moto through boto3 and prints its ids as JSON.

Usage: doctor_scenarios.py SCENARIO. The base is a healthy private instance: VPC 10.0.0.0/16
with DNS support and hostnames, an app subnet and an endpoint subnet in one AZ, the instance
(Name tag web-1) with a role holding AmazonSSMManagedInstanceCore, and interface endpoints for
ssm, ssmmessages and ec2messages with private DNS behind a group allowing 443 from the
instance's group. Each scenario breaks (or changes) exactly one thing.
"""
import json
import os
import sys
import urllib.request
import uuid

import boto3

scenario = sys.argv[1]
region = os.environ["AWS_DEFAULT_REGION"]
kw = dict(endpoint_url=os.environ["MOTO_URL"], region_name=region)
ec2 = boto3.client("ec2", **kw)
iam = boto3.client("iam", **kw)
tag = uuid.uuid4().hex[:8]
az = region + "a"

vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
ec2.modify_vpc_attribute(
    VpcId=vpc, EnableDnsHostnames={"Value": scenario != "dns-hostnames-off"}
)
app = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=az)["Subnet"]["SubnetId"]
eps = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24", AvailabilityZone=az)["Subnet"]["SubnetId"]

sg_app = ec2.create_security_group(GroupName="app-" + tag, Description="app", VpcId=vpc)["GroupId"]
sg_ep = ec2.create_security_group(GroupName="ep-" + tag, Description="endpoints", VpcId=vpc)["GroupId"]
if scenario == "instance-sg-no-443":
    ec2.revoke_security_group_egress(
        GroupId=sg_app, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    ec2.authorize_security_group_egress(
        GroupId=sg_app,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
if scenario != "endpoint-sg-no-443":
    ec2.authorize_security_group_ingress(
        GroupId=sg_ep,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "UserIdGroupPairs": [{"GroupId": sg_app}]}],
    )

run = dict(ImageId=ec2.describe_images()["Images"][0]["ImageId"], MinCount=1, MaxCount=1,
           SubnetId=app, SecurityGroupIds=[sg_app],
           TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web-1"}]}])
role = "ssm-" + tag
if scenario != "no-role":
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    if scenario == "role-without-policy":
        doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
        iam.put_role_policy(RoleName=role, PolicyName="s3-read", PolicyDocument=json.dumps(doc))
    else:
        iam.attach_role_policy(RoleName=role, PolicyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
    iam.create_instance_profile(InstanceProfileName=role)
    iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
    run["IamInstanceProfile"] = {"Name": role}
instance = ec2.run_instances(**run)["Instances"][0]["InstanceId"]
if scenario == "stopped":
    ec2.stop_instances(InstanceIds=[instance])

services = {
    "no-endpoints-no-nat": [],
    "nat": [],
    "only-ssm": ["ssm"],
    "old-agent": ["ssm", "ssmmessages"],
}.get(scenario, ["ssm", "ssmmessages", "ec2messages"])
endpoints = {}
for svc in services:
    ep = ec2.create_vpc_endpoint(
        VpcId=vpc, VpcEndpointType="Interface", ServiceName=f"com.amazonaws.{region}.{svc}",
        SubnetIds=[eps], SecurityGroupIds=[sg_ep],
        PrivateDnsEnabled=not (scenario == "no-private-dns" and svc == "ssmmessages"),
    )["VpcEndpoint"]
    endpoints[svc] = ep["VpcEndpointId"]

if scenario == "nacl-deny-443":
    acl = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "default", "Values": ["true"]}])["NetworkAcls"][0]["NetworkAclId"]
    ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Protocol="6", RuleAction="deny",
                                 Egress=True, CidrBlock="0.0.0.0/0", PortRange={"From": 443, "To": 443})

if scenario == "nat":
    # A public subnet with the NAT gateway; the app subnet's own table routes 0.0.0.0/0 to it.
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.9.0/24", AvailabilityZone=az)["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=public, AllocationId=eip)["NatGateway"]["NatGatewayId"]
    rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
    ec2.associate_route_table(RouteTableId=rtb, SubnetId=app)

keys = {}
if scenario == "denied-endpoints":
    # A caller who may do everything but ec2:DescribeVpcEndpoints; then moto starts enforcing IAM.
    user = "limited-" + tag
    iam.create_user(UserName=user)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ec2:*", "iam:*", "sts:*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "ec2:DescribeVpcEndpoints", "Resource": "*"},
    ]}
    iam.put_user_policy(UserName=user, PolicyName="all-but-endpoints", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    keys = {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
    req = urllib.request.Request(os.environ["MOTO_URL"] + "/moto-api/reset-auth", data=b"0",
                                 headers={"Content-Type": "text/plain"}, method="POST")
    urllib.request.urlopen(req).read()

print(json.dumps({"instance": instance, "vpc": vpc, "app_subnet": app, "sg_app": sg_app,
                  "sg_ep": sg_ep, "role": role, "endpoints": endpoints, "keys": keys}))
