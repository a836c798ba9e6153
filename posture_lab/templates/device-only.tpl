{
  {{- if not .Webhooks.people }}{{ fail "posture-connector (webhook people) sent no data" }}{{ end }}
  "subject": {
    {{- if and (hasKey .Webhooks.people "device") (hasKey .Webhooks.people.device "serial") }}
    "commonName": {{ toJson .Webhooks.people.device.serial }},
    "serialNumber": {{ toJson .Webhooks.people.device.serial }},
    {{- else if and (hasKey .Webhooks.people "device") (hasKey .Webhooks.people.device "udid") }}
    "commonName": {{ toJson .Webhooks.people.device.udid }},
    {{- end }}
    "organizationalUnit": {{ if hasKey .Webhooks.people "groups" }}{{ toJson .Webhooks.people.groups }}{{ else }}[]{{ end }}
  },
  "sans": {{ toJson .SANs }},
  "keyUsage": ["digitalSignature"],
  "extKeyUsage": ["clientAuth"]
}
