"""The world of bench/ssm.sh: Auto Scaling groups of simulated instances in the SSM stand-in.

Usage: python ssm_world.py ENDPOINT BUCKET HOSTS_DIR INSTANCES_FILE GROUP:SIZE...

Creates, in the moto behind ENDPOINT (tests/it/fixtures/ssm_standin.py, which is moto with SSM
Run Command made real): the bucket, a VPC 127.0.0.0/16 with one subnet 127.0.16.0/20 (room for
4,000 loopback addresses), a launch template, and each group with SIZE instances. Every instance
gets a home and install directory under HOSTS_DIR (tmpfs in the benchmark) and an entry in
INSTANCES_FILE: the environment and working directory the stand-in runs its commands in, as an
instance's SSM agent would. Prints one line per group: `NAME ID ID ...`.
"""

import json
import os
import sys

import boto3

ZONE = "us-east-1a"


def clients(endpoint):
    settings = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    return (
        boto3.client("ec2", **settings),
        boto3.client("autoscaling", **settings),
        boto3.client("s3", **settings),
    )


def instance_env(endpoint, home):
    """What the agent's shell has on the instance: the bucket's endpoint and credentials (the
    instance profile's stand-in), no metadata service, its own install dir."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "RELEASE_INSTALL_DIR": os.path.join(home, "install"),
        "AWS_ENDPOINT_URL": endpoint,
        # A key of their own, so that the request log tells the hosts' requests from the
        # controller's (moto accepts any key).
        "AWS_ACCESS_KEY_ID": "instance",
        "AWS_SECRET_ACCESS_KEY": "instance",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def main():
    endpoint, bucket, hosts_dir, instances_file = sys.argv[1:5]
    groups = [arg.split(":") for arg in sys.argv[5:]]
    ec2, autoscaling, s3 = clients(endpoint)
    s3.create_bucket(Bucket=bucket)
    vpc = ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="127.0.16.0/20", AvailabilityZone=ZONE)
    subnet = subnet["Subnet"]["SubnetId"]
    template = ec2.create_launch_template(
        LaunchTemplateName="bench",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    instances = {}
    for name, size in groups:
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name,
            MinSize=0,
            MaxSize=int(size),
            DesiredCapacity=int(size),
            VPCZoneIdentifier=subnet,
            LaunchTemplate={"LaunchTemplateId": template, "Version": "$Latest"},
        )
        found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        ids = sorted(i["InstanceId"] for i in found["AutoScalingGroups"][0]["Instances"])
        for instance in ids:
            home = os.path.join(hosts_dir, instance)
            os.makedirs(home)
            instances[instance] = {
                "env": instance_env(endpoint, home),
                "cwd": home,
                "agent": "Online",
                "delivery": "ok",
            }
        print(name, *ids)
    world = {
        "instances": instances,
        "pending_seconds": 0.5,
        "min_poll_interval": 0.5,
        "delivery_timeout_seconds": 30,
    }
    with open(instances_file + ".tmp", "w") as out:
        json.dump(world, out)
    os.replace(instances_file + ".tmp", instances_file)


if __name__ == "__main__":
    main()
